// swift-tools-version:6.0
// The ZeroFS-in-Swift package. Layers point down only (see Docs/architecture.md):
// zerofs (CLI) -> Workloads, BackendCatalog -> backends (lsm over ObjectStore, rocksdb,
// lmdb, memory; S3Store implements ObjectStore on S3) -> Engine; C shims (CRocksDB,
// CLMDB, CZstd, CCRC32C) at the bottom.
import PackageDescription

let package = Package(
    name: "zerofs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "zerofs", targets: ["zerofs"]),
        .library(name: "Engine", targets: ["Engine"]),
        // Preloaded into the crash test's writer child to count completed syncs.
        .library(name: "ZeroFSSyncCounter", type: .dynamic, targets: ["SyncCounter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // C shims: one system-library target per native library, found by pkg-config.
        .systemLibrary(name: "CRocksDB", pkgConfig: "rocksdb", providers: [.apt(["librocksdb-dev"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        .target(name: "Engine"),
        .target(name: "SyncCounter", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CCRC32C"),
        .target(name: "Compression", dependencies: ["CZstd"]),

        .target(name: "MemoryBackend", dependencies: ["Engine"], path: "Sources/Backends/Memory"),
        .target(name: "RocksDBBackend", dependencies: ["Engine", "CRocksDB"], path: "Sources/Backends/RocksDB"),
        .target(name: "LMDBBackend", dependencies: ["Engine", "CLMDB"], path: "Sources/Backends/LMDB"),
        .target(name: "ObjectStore", dependencies: ["Engine", "CCRC32C"], path: "Sources/Backends/ObjectStore"),
        // ObjectStore on S3-compatible storage (issue 8): AsyncHTTPClient, SigV4 with swift-crypto.
        .target(
            name: "S3Store",
            dependencies: [
                "Engine", "ObjectStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/Backends/S3"
        ),
        .target(
            name: "LSMBackend", dependencies: ["Engine", "ObjectStore", "Compression", "CCRC32C"], path: "Sources/Backends/LSM",
            // The hot paths (memtable, block cursors, merge) mutate class state per entry;
            // dynamic exclusivity checks were 40% of a scan's instructions (Docs/lsm.md).
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        // The one place that names every backend: adding a backend is one folder plus one line here.
        .target(
            name: "BackendCatalog",
            dependencies: ["Engine", "MemoryBackend", "RocksDBBackend", "LMDBBackend", "LSMBackend", "S3Store"],
            path: "Sources/Backends/Catalog"
        ),

        .target(name: "FS", dependencies: ["Engine", "Compression"]),

        // NFSv3 and MOUNT over ONC RPC on SwiftNIO (Docs/nfs.md).
        .target(
            name: "NFS",
            dependencies: ["Engine", "FS", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            path: "Sources/Frontends/NFS"
        ),

        // The gRPC AdminService (Protos/admin.proto; generated code in Generated/, made by
        // scripts/generate-grpc) and its client side used by the command line (Docs/admin.md).
        .target(
            name: "Admin",
            dependencies: [
                "Engine", "FS",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/Frontends/Admin"
        ),

        // The TOML configuration file (Docs/config.md).
        .target(name: "Config", dependencies: ["Engine", "FS", "LSMBackend", "S3Store", .product(name: "TOMLKit", package: "TOMLKit")]),

        .target(name: "Workloads", dependencies: ["Engine", "FS", "NFS", "S3Store"]),
        .executableTarget(
            name: "zerofs",
            dependencies: [
                "Engine", "BackendCatalog", "Workloads", "FS", "NFS", "Admin", "Config",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Shared test machinery: the conformance suite, the model-based test, the crash harness.
        .target(name: "KVTestSupport", dependencies: ["Engine", "MemoryBackend", "Workloads"]),

        // FS test machinery: the POSIX-semantics cases, the concurrent workload, crash points.
        .target(name: "FSTestSupport", dependencies: ["Engine", "FS", "KVTestSupport"]),

        .testTarget(name: "EngineTests", dependencies: ["Engine", "KVTestSupport", "MemoryBackend"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression"]),
        .testTarget(
            name: "BackendsTests",
            dependencies: [
                "Engine", "KVTestSupport", "BackendCatalog", "MemoryBackend", "RocksDBBackend", "LMDBBackend", "LSMBackend", "ObjectStore", "Workloads", "S3Store",
            ]
        ),
        .testTarget(
            name: "AdminTests",
            dependencies: ["Admin", "Config", "FS", "Engine", "BackendCatalog", "MemoryBackend", "Workloads", "KVTestSupport"]
        ),
        .testTarget(name: "NFSTests", dependencies: ["NFS", "FS", "FSTestSupport", "KVTestSupport", "MemoryBackend", "LSMBackend"]),
        .testTarget(
            name: "FSTests",
            dependencies: [
                "Engine", "FS", "FSTestSupport", "KVTestSupport", "BackendCatalog", "MemoryBackend", "RocksDBBackend", "LMDBBackend", "LSMBackend",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
