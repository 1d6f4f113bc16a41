// The XML of S3: replies (ListObjectsV2 pages, errors, multipart and batch-delete results)
// read into a small element tree with Foundation's XMLParser, and the request bodies S3
// wants in XML. Element names are matched without namespace (S3 uses a default one).

import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// One element: its name, its own text (entities resolved) and its child elements.
struct S3XMLNode {
    var name: String
    var text = ""
    var children: [S3XMLNode] = []

    func child(_ name: String) -> S3XMLNode? { children.first { $0.name == name } }

    func all(_ name: String) -> [S3XMLNode] { children.filter { $0.name == name } }

    /// The text of the first child named `name`, exactly as sent.
    func value(_ name: String) -> String? { child(name)?.text }

    /// The text of the first child named `name` without surrounding whitespace.
    func trimmedValue(_ name: String) -> String? { value(name)?.trimmingCharacters(in: .whitespacesAndNewlines) }
}

enum S3XML {
    /// The root element, or nil when the bytes are not XML.
    static func parse(_ bytes: [UInt8]) -> S3XMLNode? {
        guard !bytes.isEmpty else { return nil }
        let parser = XMLParser(data: Data(bytes))
        let builder = TreeBuilder()
        parser.delegate = builder
        guard parser.parse() else { return nil }
        return builder.root
    }

    /// The Code and Message of an S3 error reply (<Error><Code>..</Code>..</Error>).
    static func error(_ bytes: [UInt8]) -> (code: String, message: String?)? {
        guard let root = parse(bytes), root.name == "Error", let code = root.trimmedValue("Code") else { return nil }
        return (code: code, message: root.trimmedValue("Message"))
    }

    /// One ListObjectsV2 page: its keys, and the token of the next page when there is one.
    static func listPage(_ bytes: [UInt8]) -> (keys: [String], next: String?)? {
        guard let root = parse(bytes), root.name == "ListBucketResult" else { return nil }
        let keys = root.all("Contents").compactMap { $0.value("Key") }
        guard root.trimmedValue("IsTruncated") == "true" else { return (keys: keys, next: nil) }
        // A truncated page without a token would make the caller loop forever.
        guard let next = root.value("NextContinuationToken"), !next.isEmpty else { return nil }
        return (keys: keys, next: next)
    }

    /// The per-key failures of a DeleteObjects reply (a quiet reply lists only these).
    static func deleteErrors(_ bytes: [UInt8]) -> [(key: String, code: String, message: String?)] {
        guard let root = parse(bytes), root.name == "DeleteResult" else { return [] }
        return root.all("Error").map { failure in
            (key: failure.value("Key") ?? "?", code: failure.trimmedValue("Code") ?? "?", message: failure.trimmedValue("Message"))
        }
    }

    static func deleteRequest(keys: [String]) -> [UInt8] {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>"
        for key in keys { xml += "<Object><Key>\(escape(key))</Key></Object>" }
        xml += "</Delete>"
        return Array(xml.utf8)
    }

    static func completeRequest(parts: [(number: Int, etag: String)]) -> [UInt8] {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>"
        for part in parts { xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(escape(part.etag))</ETag></Part>" }
        xml += "</CompleteMultipartUpload>"
        return Array(xml.utf8)
    }

    static func createBucketRequest(region: String) -> [UInt8] {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CreateBucketConfiguration><LocationConstraint>"
            + escape(region) + "</LocationConstraint></CreateBucketConfiguration>"
        return Array(xml.utf8)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// Builds the tree from the parser's events. Used by one parse on one thread.
private final class TreeBuilder: NSObject, XMLParserDelegate {
    private var open: [S3XMLNode] = []
    private(set) var root: S3XMLNode?

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
        attributes attributeDict: [String: String]
    ) {
        open.append(S3XMLNode(name: elementName))
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let node = open.popLast() else { return }
        if open.isEmpty {
            root = node
        } else {
            open[open.count - 1].children.append(node)
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if !open.isEmpty { open[open.count - 1].text += string }
    }
}
