#!/usr/bin/env python3
"""An independent client of zerofs's gRPC AdminService (Protos/admin.proto).

    admin_client.py [--stubs DIR] [--keep-going] HOST:PORT

Calls every RPC of the service against a freshly started server that holds only the dataset
"root" (its default), checks each answer, error status codes included, and prints one line
per check; it leaves only "root" behind (no snapshots, no checkpoints). Exits 1 at the first
failed check (with --keep-going: once every group of checks has run, when any failed) or
when the server cannot be reached, and 2 on bad usage or missing stubs.

The stubs (admin_pb2.py, admin_pb2_grpc.py) come from setup-env, which generates them into
VENV/stubs; give their folder with --stubs or ZEROFS_ADMIN_STUBS, or put it on PYTHONPATH.
"""

import argparse
import collections
import os
import sys

GROUPS = []


def group(title):
    """Registers a group of checks; they run in the order they are defined."""

    def register(function):
        GROUPS.append((title, function))
        return function

    return register


class Failure(Exception):
    """A check that failed; its message says what was asked, answered and expected."""


class Client:
    """The stub, with a check helper per kind of expectation."""

    def __init__(self, grpc, pb, stub, request_types, timeout):
        self.grpc = grpc
        self.pb = pb
        self.stub = stub
        self.request_types = request_types  # method name -> request message name
        self.timeout = timeout
        self.passed = 0
        self.last = ""  # the latest call, for the lines of checks of its reply
        self.calls = collections.Counter()

    # -- calls

    def _request(self, method, fields):
        return getattr(self.pb, self.request_types[method])(**fields)

    @staticmethod
    def describe(method, fields):
        args = ", ".join(f"{key}={value!r}" for key, value in fields.items())
        return f"{method}({args})"

    def call(self, method, **fields):
        """Calls `method`; a status other than OK fails the check."""
        request = self._request(method, fields)
        self.calls[method] += 1
        self.last = self.describe(method, fields)
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout)
        except self.grpc.RpcError as error:
            raise Failure(
                f"{self.describe(method, fields)} answered {error.code().name}: {error.details()!r}; expected success"
            ) from None

    def succeeds(self, method, **fields):
        """Calls `method`, whose reply has nothing to check, and records that it succeeded."""
        reply = self.call(method, **fields)
        self.ok(f"{self.last} -> OK")
        return reply

    def expect_error(self, code_name, method, **fields):
        """Calls `method` and checks that it fails with status `code_name` and a message."""
        request = self._request(method, fields)
        what = self.describe(method, fields)
        self.calls[method] += 1
        try:
            reply = getattr(self.stub, method)(request, timeout=self.timeout)
        except self.grpc.RpcError as error:
            code = error.code()
            if code.name != code_name:
                raise Failure(f"{what} answered {code.name}: {error.details()!r}; expected {code_name}") from None
            if not (error.details() or "").strip():
                raise Failure(f"{what} answered {code.name} with an empty message; expected a message")
            self.ok(f"{what} -> {code.name} ({error.details()})")
            return
        raise Failure(f"{what} succeeded with {one_line(reply)}; expected {code_name}")

    # -- checks

    def ok(self, what):
        self.passed += 1
        print(f"ok    {what}", flush=True)

    def check(self, condition, what, detail=""):
        if not condition:
            raise Failure(f"{what}: {detail}" if detail else what)
        self.ok(what)

    def equal(self, actual, expected, what):
        self.check(actual == expected, f"{what} == {expected!r}", f"got {actual!r}")

    def dataset(self, reply, name, *, snapshot=False, readonly=False, default=False, origin=None, uuid=None):
        """Checks the fields of a Dataset reply."""
        problems = []
        if reply.name != name:
            problems.append(f"name {reply.name!r}, expected {name!r}")
        if not reply.uuid:
            problems.append("empty uuid")
        if uuid is not None and reply.uuid != uuid:
            problems.append(f"uuid {reply.uuid!r}, expected {uuid!r}")
        if reply.is_snapshot != snapshot:
            problems.append(f"is_snapshot {reply.is_snapshot}, expected {snapshot}")
        if reply.readonly != readonly:
            problems.append(f"readonly {reply.readonly}, expected {readonly}")
        if reply.is_default != default:
            problems.append(f"is_default {reply.is_default}, expected {default}")
        if reply.created_at_nanos == 0:
            problems.append("created_at_nanos 0")
        if reply.root_inode == 0:
            problems.append("root_inode 0")
        if origin is not None:
            if reply.origin != origin:
                problems.append(f"origin {reply.origin!r}, expected {origin!r}")
            if origin and not reply.has_parent:
                problems.append("has_parent false although it has an origin")
        detail = "; ".join(problems) + f" (reply: {one_line(reply)})"
        flags = [f"snapshot={snapshot}", f"readonly={readonly}", f"default={default}"]
        if origin is not None:
            flags.append(f"origin={origin!r}")
        self.check(not problems, f"{self.last} -> {name!r} {' '.join(flags)}", detail)

    def names(self, replies):
        return sorted(reply.name for reply in replies)


def one_line(message):
    from google.protobuf import text_format

    return "{" + text_format.MessageToString(message, as_one_line=True) + "}"


# ---------------------------------------------------------------------------------------------
# The checks. State they share (uuids) lives in `state`.


@group("a fresh server")
def fresh(c, state):
    default = c.call("GetDefaultDataset")
    c.dataset(default, "root", default=True)
    c.equal(c.names(c.call("ListDatasets").datasets), ["root"], "ListDatasets() names (a fresh server)")
    c.equal(c.names(c.call("ListSnapshots").snapshots), [], "ListSnapshots() names (a fresh server)")
    c.equal([cp.name for cp in c.call("ListCheckpoints").checkpoints], [], "ListCheckpoints() names (a fresh server)")


@group("datasets")
def datasets(c, state):
    py = c.call("CreateDataset", name="py")
    c.dataset(py, "py", origin="")
    c.check(not py.has_parent, "CreateDataset(py) has_parent false", f"reply {one_line(py)}")
    child = c.call("CreateDataset", name="py/child")
    c.dataset(child, "py/child", origin="")
    state["py"] = py.uuid
    state["py/child"] = child.uuid

    listed = c.call("ListDatasets").datasets
    c.equal(c.names(listed), ["py", "py/child", "root"], "ListDatasets() names")
    c.check(len({d.uuid for d in listed}) == len(listed), "ListDatasets() uuids distinct", f"{[d.uuid for d in listed]}")
    c.check(len({d.id for d in listed}) == len(listed), "ListDatasets() ids distinct", f"{[d.id for d in listed]}")

    info = c.call("GetDatasetInfo", name="py")
    c.dataset(info, "py", uuid=py.uuid, origin="")
    c.equal(info.id, py.id, "GetDatasetInfo(py).id")
    c.dataset(c.call("GetDatasetInfo", name="py/child"), "py/child", uuid=child.uuid)

    c.dataset(c.call("GetDefaultDataset"), "root", default=True)
    c.dataset(c.call("SetDefaultDataset", name="py"), "py", default=True, uuid=py.uuid)
    c.dataset(c.call("GetDefaultDataset"), "py", default=True, uuid=py.uuid)
    c.dataset(c.call("GetDatasetInfo", name="root"), "root", default=False)
    c.dataset(c.call("SetDefaultDataset", name="root"), "root", default=True)
    c.dataset(c.call("GetDefaultDataset"), "root", default=True)
    c.dataset(c.call("GetDatasetInfo", name="py"), "py", default=False)


@group("snapshots")
def snapshots(c, state):
    made = c.call("CreateSnapshot", source="py", name="s1", recursive=True).snapshots
    c.equal(c.names(made), ["py/child@s1", "py@s1"], "CreateSnapshot(py, s1, recursive) names")
    for snap in made:
        dataset = snap.name.split("@")[0]
        c.dataset(snap, snap.name, snapshot=True, readonly=True, origin=dataset)
        c.equal(snap.parent_uuid, state[dataset], f"{snap.name}.parent_uuid ({dataset}'s uuid)")
    c.check(
        len({snap.created_at_nanos for snap in made}) == 1,
        "a recursive snapshot's members share created_at_nanos (one point in time)",
        f"{[(snap.name, snap.created_at_nanos) for snap in made]}",
    )
    state["py@s1"] = next(snap.uuid for snap in made if snap.name == "py@s1")

    c.equal(c.names(c.call("ListSnapshots").snapshots), ["py/child@s1", "py@s1"], "ListSnapshots() names")
    c.equal(c.names(c.call("ListSnapshots", source="py").snapshots), ["py@s1"], "ListSnapshots(source='py') names")
    c.equal(c.names(c.call("ListSnapshots", source="py/child").snapshots), ["py/child@s1"], "ListSnapshots(source='py/child') names")
    c.dataset(c.call("GetDatasetInfo", name="py@s1"), "py@s1", snapshot=True, readonly=True, origin="py", uuid=state["py@s1"])

    renamed = c.call("RenameSnapshot", name="py@s1", new_name="s2")
    c.dataset(renamed, "py@s2", snapshot=True, readonly=True, origin="py", uuid=state["py@s1"])
    c.equal(c.names(c.call("ListSnapshots", source="py").snapshots), ["py@s2"], "ListSnapshots(source='py') names after the rename")
    c.expect_error("NOT_FOUND", "GetDatasetInfo", name="py@s1")
    state["py@s2"] = renamed.uuid


@group("clones")
def clones(c, state):
    clone = c.call("CloneSnapshot", snapshot="py@s2", name="pyclone")
    c.dataset(clone, "pyclone", origin="py@s2")
    c.equal(clone.parent_uuid, state["py@s2"], "CloneSnapshot(py@s2).parent_uuid (py@s2's uuid)")
    state["pyclone"] = clone.uuid
    c.dataset(c.call("GetDatasetInfo", name="pyclone"), "pyclone", origin="py@s2", uuid=clone.uuid)
    c.equal(c.names(c.call("ListDatasets").datasets), ["py", "py/child", "pyclone", "root"], "ListDatasets() names with the clone")


@group("rollback")
def rollback(c, state):
    # The snapshot by its bare name and by its full name (admin.proto allows both); each
    # rollback gives the dataset a new head, so its generation grows.
    before = c.call("GetDatasetInfo", name="py").generation
    first = c.call("RollbackDataset", dataset="py", snapshot="s2")
    c.dataset(first, "py", uuid=state["py"])
    c.check(first.generation > before, f"RollbackDataset(py, s2) generation grows ({before} -> {first.generation})")
    second = c.call("RollbackDataset", dataset="py", snapshot="py@s2")
    c.dataset(second, "py", uuid=state["py"])
    c.check(second.generation > first.generation, f"RollbackDataset(py, py@s2) generation grows ({first.generation} -> {second.generation})")
    c.equal(c.names(c.call("ListSnapshots", source="py").snapshots), ["py@s2"], "ListSnapshots(source='py') after the rollback")
    c.expect_error("NOT_FOUND", "RollbackDataset", dataset="py", snapshot="nosuch")
    c.expect_error("FAILED_PRECONDITION", "RollbackDataset", dataset="py", snapshot="py/child@s1")


@group("rename and readonly")
def rename_readonly(c, state):
    renamed = c.call("RenameDataset", name="pyclone", new_name="pyclone2")
    c.dataset(renamed, "pyclone2", origin="py@s2", uuid=state["pyclone"])
    c.expect_error("NOT_FOUND", "GetDatasetInfo", name="pyclone")
    c.dataset(c.call("SetDatasetReadonly", name="pyclone2", readonly=True), "pyclone2", readonly=True, origin="py@s2")
    c.dataset(c.call("GetDatasetInfo", name="pyclone2"), "pyclone2", readonly=True, origin="py@s2", uuid=state["pyclone"])


@group("error status codes")
def errors(c, state):
    c.expect_error("ALREADY_EXISTS", "CreateDataset", name="py")
    c.expect_error("NOT_FOUND", "GetDatasetInfo", name="nope")
    c.expect_error("INVALID_ARGUMENT", "CreateDataset", name="a@b")
    c.expect_error("INVALID_ARGUMENT", "CreateDataset", name="")
    c.expect_error("NOT_FOUND", "CreateDataset", name="missing/child")
    c.expect_error("FAILED_PRECONDITION", "DeleteDataset", name="root")
    # py has a nested dataset, a snapshot and a clone.
    c.expect_error("FAILED_PRECONDITION", "DeleteDataset", name="py")
    # The default dataset cannot go.
    c.dataset(c.call("CreateDataset", name="pytmp"), "pytmp")
    c.dataset(c.call("SetDefaultDataset", name="pytmp"), "pytmp", default=True)
    c.expect_error("FAILED_PRECONDITION", "DeleteDataset", name="pytmp")
    c.dataset(c.call("SetDefaultDataset", name="root"), "root", default=True)
    c.succeeds("DeleteDataset", name="pytmp")
    c.expect_error("NOT_FOUND", "GetDatasetInfo", name="pytmp")
    # Cloning from something that is not a snapshot: the dataset "py" (a name without "@"
    # that no snapshot has, but a dataset does).
    c.expect_error("FAILED_PRECONDITION", "CloneSnapshot", snapshot="py", name="pyx")
    c.expect_error("NOT_FOUND", "CloneSnapshot", snapshot="nosuch", name="pyx")
    c.expect_error("INVALID_ARGUMENT", "CloneSnapshot", snapshot="py@", name="pyx")
    c.expect_error("ALREADY_EXISTS", "CloneSnapshot", snapshot="py@s2", name="py/child")
    c.expect_error("ALREADY_EXISTS", "CreateSnapshot", source="py", name="s2")
    c.expect_error("NOT_FOUND", "CreateSnapshot", source="nope", name="s1")
    c.expect_error("NOT_FOUND", "ListSnapshots", source="nope")
    c.expect_error("NOT_FOUND", "DeleteSnapshot", name="py@nosuch")
    c.expect_error("FAILED_PRECONDITION", "RenameSnapshot", name="py@s2", new_name="root@s9")
    c.expect_error("FAILED_PRECONDITION", "SetDefaultDataset", name="py@s2")
    c.expect_error("NOT_FOUND", "SetDatasetReadonly", name="nope", readonly=True)
    c.expect_error("NOT_FOUND", "RenameDataset", name="nope", new_name="nope2")
    c.expect_error("INVALID_ARGUMENT", "CreateCheckpoint", name="bad name")
    c.expect_error("NOT_FOUND", "DeleteCheckpoint", name="nosuch")


@group("checkpoints")
def checkpoints(c, state):
    made = c.call("CreateCheckpoint", name="pycp")
    c.equal(made.name, "pycp", "CreateCheckpoint(pycp).name")
    c.check(made.created_at_nanos > 0, "CreateCheckpoint(pycp).created_at_nanos > 0", f"got {made.created_at_nanos}")
    listed = c.call("ListCheckpoints").checkpoints
    c.check(any(cp.name == "pycp" for cp in listed), "ListCheckpoints() contains pycp", f"got {[cp.name for cp in listed]}")
    c.expect_error("ALREADY_EXISTS", "CreateCheckpoint", name="pycp")
    stats = c.call("GetStats")
    c.equal(stats.checkpoints, len(listed), "GetStats().checkpoints (ListCheckpoints count)")
    c.succeeds("DeleteCheckpoint", name="pycp")
    listed = c.call("ListCheckpoints").checkpoints
    c.check(all(cp.name != "pycp" for cp in listed), "ListCheckpoints() lacks pycp after DeleteCheckpoint", f"got {[cp.name for cp in listed]}")


@group("statistics")
def statistics(c, state):
    datasets = c.call("ListDatasets").datasets
    snapshots = c.call("ListSnapshots").snapshots
    checkpoints = c.call("ListCheckpoints").checkpoints
    stats = c.call("GetStats")
    c.check(stats.backend != "", f"GetStats().backend non-empty ({stats.backend!r})")
    c.check(stats.path != "", f"GetStats().path non-empty ({stats.path!r})")
    c.equal(stats.datasets, len(datasets), "GetStats().datasets (ListDatasets count)")
    c.equal(stats.snapshots, len(snapshots), "GetStats().snapshots (ListSnapshots count)")
    c.equal(stats.checkpoints, len(checkpoints), "GetStats().checkpoints (ListCheckpoints count)")
    created = stats.operations.get("admin.CreateDataset", 0)
    c.check(created >= 2, f"GetStats().operations['admin.CreateDataset'] >= 2 ({created})")
    c.check(stats.uptime_nanos > 0, f"GetStats().uptime_nanos > 0 ({stats.uptime_nanos})")
    # Every call this client made so far is counted (the server counts failed calls too).
    short = {
        f"admin.{method}": (count, stats.operations.get(f"admin.{method}", 0))
        for method, count in sorted(c.calls.items())
        if stats.operations.get(f"admin.{method}", 0) < count
    }
    c.check(not short, f"GetStats().operations counts each of the {len(c.calls)} RPCs called so far", f"fewer than called (called, counted): {short}")


@group("maintenance")
def maintenance(c, state):
    c.succeeds("Flush")
    fsck = c.call("Fsck")
    c.check(list(fsck.problems) == [], "Fsck().problems empty", f"got {list(fsck.problems)}")
    c.check(fsck.inodes > 0, f"Fsck().inodes > 0 ({fsck.inodes})")
    scrub = c.call("Scrub")
    failures = [f"{f.object}: {f.reason}" for f in scrub.failures]
    c.check(failures == [], "Scrub().failures empty", f"got {failures}")
    c.check(scrub.objects > 0, f"Scrub().objects > 0 ({scrub.objects})")
    stats = c.call("GetStats")
    for name, progress in (("fsck", stats.fsck), ("scrub", stats.scrub)):
        c.check(
            not progress.running and progress.last_finished_at_nanos > 0 and progress.last_problems == 0,
            f"GetStats().{name}: finished, no problems",
            f"got {one_line(progress)}",
        )


@group("deleting")
def deleting(c, state):
    c.equal(c.call("DeleteSnapshot", name="py/child@s1").name, "py/child@s1", "DeleteSnapshot(name='py/child@s1').name")
    c.equal(c.names(c.call("ListSnapshots", source="py/child").snapshots), [], "ListSnapshots(source='py/child') after DeleteSnapshot")
    c.expect_error("NOT_FOUND", "GetDatasetInfo", name="py/child@s1")
    # Deletes py/child and py@s2 too; the clone stays, its origin gone.
    c.succeeds("DeleteDataset", name="py", recursive=True)
    c.equal(c.names(c.call("ListDatasets").datasets), ["pyclone2", "root"], "ListDatasets() after DeleteDataset(py, recursive)")
    c.equal(c.names(c.call("ListSnapshots").snapshots), [], "ListSnapshots() after DeleteDataset(py, recursive)")
    c.dataset(c.call("GetDatasetInfo", name="pyclone2"), "pyclone2", readonly=True, origin="", uuid=state["pyclone"])
    c.dataset(c.call("SetDatasetReadonly", name="pyclone2", readonly=False), "pyclone2", readonly=False, origin="")
    c.succeeds("DeleteDataset", name="pyclone2")
    c.equal(c.names(c.call("ListDatasets").datasets), ["root"], "ListDatasets() at the end")
    c.dataset(c.call("GetDefaultDataset"), "root", default=True)
    stats = c.call("GetStats")
    c.check(
        (stats.datasets, stats.snapshots, stats.checkpoints) == (1, 0, 0),
        "GetStats() at the end: 1 dataset, 0 snapshots, 0 checkpoints",
        f"got {stats.datasets}, {stats.snapshots}, {stats.checkpoints}",
    )


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description="Checks every RPC of zerofs's AdminService against a fresh server.")
    parser.add_argument("address", metavar="HOST:PORT", help="the AdminService, e.g. 127.0.0.1:7000")
    parser.add_argument("--stubs", default=os.environ.get("ZEROFS_ADMIN_STUBS"), help="folder of admin_pb2.py and admin_pb2_grpc.py (default: $ZEROFS_ADMIN_STUBS, else sys.path)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for each call (default 120)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")
    parser.add_argument("--keep-going", action="store_true", help="after a failed check, go on with the next group of checks")
    args = parser.parse_args()

    host, sep, port = args.address.rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"address {args.address!r} is not HOST:PORT")
    if args.stubs:
        if not os.path.isfile(os.path.join(args.stubs, "admin_pb2_grpc.py")):
            print(f"admin_client: no admin_pb2_grpc.py in {args.stubs} (run setup-env VENV and pass --stubs VENV/stubs)", file=sys.stderr)
            return 2
        sys.path.insert(0, os.path.abspath(args.stubs))
    try:
        import grpc
        import admin_pb2
        import admin_pb2_grpc
    except ImportError as error:
        print(f"admin_client: {error} (run it with the venv's python from setup-env, and --stubs VENV/stubs)", file=sys.stderr)
        return 2

    service = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    with grpc.insecure_channel(args.address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            print(f"admin_client: FAIL cannot connect to {args.address} within {args.connect_timeout:g} s", file=sys.stderr, flush=True)
            return 1
        request_types = {method.name: method.input_type.name for method in service.methods}
        client = Client(grpc, admin_pb2, admin_pb2_grpc.AdminServiceStub(channel), request_types, args.timeout)
        state = {}

        failed = []
        for title, function in GROUPS:
            print(f"--    {title}", flush=True)
            try:
                function(client, state)
            except Failure as failure:
                print(f"FAIL  {failure}", flush=True)
                failed.append(f"{title}: {failure}")
                if not args.keep_going:
                    print(f"admin_client: FAIL in '{title}' after {client.passed} passed checks: {failure}", file=sys.stderr, flush=True)
                    return 1

        uncalled = sorted(set(client.request_types) - set(client.calls))
        if uncalled:
            print(f"FAIL  RPCs of AdminService never called: {', '.join(uncalled)}", flush=True)
            failed.append(f"never called: {', '.join(uncalled)}")
        else:
            client.ok(f"all {len(client.request_types)} RPCs of AdminService called")

    if failed:
        print(f"admin_client: {len(failed)} group(s) failed, {client.passed} checks passed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"admin_client: all {client.passed} checks passed, every RPC called", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
