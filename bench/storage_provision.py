"""Share and bucket provisioning latency through Teapot's paths against the same calls made
straight to Manila and RADOS Gateway, median of --count each, on one `teapot up --storage` box.

    .venv/bin/python bench/storage_provision.py [--count 20] [--echo]

Share: what manila-csi does with a cluster's own application credential (a token with access
rules, which Manila's keystonemiddleware checks against its catalog type): create a CephFS share,
wait until available, add a cephx rule, wait until active, read the export location. Straight:
the same calls with the project member's own password token.

Bucket: Teapot's COSI driver (`teapot-cosi` on a unix socket, gRPC DriverCreateBucket then
DriverGrantBucketAccess, as the COSI sidecar calls it: S3 CreateBucket, then a new EC2 credential
through Teapot's API) with the cluster's credentials, against S3 CreateBucket straight to RGW with
the same EC2 credentials (minio). The driver's CPU-seconds per
bucket are printed too. The two kinds alternate call by call, so load from elsewhere falls on both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, free_base, median, quiet_check, state_dir  # noqa: E402
from tests.integration import storage  # noqa: E402
from tests.integration.conftest import STORAGE_BOX_PORTS  # noqa: E402

MANILA = {"X-OpenStack-Manila-API-Version": "2.65"}
SHARE = {"service_type": "sharev2", "interface": "public"}
LABELS = {"manila_csi_enabled": "true", "object_storage_enabled": "true"}


def _until(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out: {what}")


def provision_share(sess, name: str) -> tuple[float, str]:
    """Seconds from the create call to an active cephx rule and an export location."""
    started = time.monotonic()
    r = sess.post("/shares", endpoint_filter=SHARE, headers=MANILA, json={"share": {
        "share_proto": "CEPHFS", "size": 1, "name": name}})
    share = r.json()["share"]["id"]

    def status():
        s = sess.get(f"/shares/{share}", endpoint_filter=SHARE, headers=MANILA).json()["share"]
        if s["status"] == "error":
            raise RuntimeError(f"share {name} failed")
        return s["status"] == "available"

    _until(status, what=f"share {name}")
    sess.post(f"/shares/{share}/action", endpoint_filter=SHARE, headers=MANILA, json={
        "allow_access": {"access_type": "cephx", "access_to": name, "access_level": "rw"}})

    def active():
        rules = sess.get("/share-access-rules", endpoint_filter=SHARE, headers=MANILA,
                         params={"share_id": share}).json()["access_list"]
        return any(r["state"] == "active" for r in rules)

    _until(active, what=f"rule of {name}")
    sess.get(f"/shares/{share}/export_locations", endpoint_filter=SHARE, headers=MANILA)
    return time.monotonic() - started, share


def delete_share(sess, share: str) -> None:
    sess.delete(f"/shares/{share}", endpoint_filter=SHARE, headers=MANILA, raise_exc=False)


class CosiDriver:
    """`teapot-cosi` as the cluster runs it, configured with the cluster's credentials."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.socket = directory / "cosi.sock"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("teapot-cosi")), "--endpoint",
             f"unix://{self.socket}", "--log-level", "WARNING"],
            env={**os.environ, **env}, start_new_session=True)
        _until(self.socket.exists, timeout=30, what="teapot-cosi listening")
        import grpc

        from teapot.cosi import cosi_pb2, cosi_pb2_grpc

        self.pb = cosi_pb2
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.stub = cosi_pb2_grpc.ProvisionerStub(self.channel)

    def cpu(self) -> float:
        t = psutil.Process(self.process.pid).cpu_times()
        return t.user + t.system

    def provision(self, name: str) -> float:
        pb = self.pb
        started = time.monotonic()
        made = self.stub.DriverCreateBucket(pb.DriverCreateBucketRequest(
            name=name, protocols=[pb.ObjectProtocol(type=pb.ObjectProtocol.S3)]), timeout=60)
        self.stub.DriverGrantBucketAccess(pb.DriverGrantBucketAccessRequest(
            account_name=f"access-{name}",
            protocol=pb.ObjectProtocol(type=pb.ObjectProtocol.S3),
            authentication_type=pb.AuthenticationType(type=pb.AuthenticationType.KEY),
            buckets=[pb.DriverGrantBucketAccessRequest.AccessedBucket(
                bucket_id=made.bucket_id, access_mode=pb.AccessMode())]), timeout=60)
        return time.monotonic() - started

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20, help="provisionings of each kind")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    parser.add_argument("--keep", action="store_true", help="keep the box's state dir")
    args = parser.parse_args()
    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)

    with state_dir(args.keep, "teapot-bench-provision-") as root:
        box = Box(root / "box", 1, free_base(STORAGE_BOX_PORTS), echo=args.echo,
                  args=("--storage", "--no-switch"))
        driver = None
        try:
            box.start()
            people = storage.people(box)
            member = people["demo"]
            uuid_ = storage.create_cluster(box, member, "bench", LABELS)
            storage.settled(box, member, uuid_)
            creds = storage.stored_credentials(box, uuid_)
            cluster = storage.app_session(box, creds["application_credential_id"],
                                          creds["application_credential_secret"])
            s3_url = member.get_endpoint(service_type="s3", interface="public")
            driver = CosiDriver(root, {
                "S3_ENDPOINT": s3_url, "AWS_ACCESS_KEY_ID": creds["ec2_access"],
                "AWS_SECRET_ACCESS_KEY": creds["ec2_secret"],
                "OS_AUTH_URL": box.url("keystone") + "/v3",
                "OS_APPLICATION_CREDENTIAL_ID": creds["application_credential_id"],
                "OS_APPLICATION_CREDENTIAL_SECRET": creds["application_credential_secret"],
                "TEAPOT_CLUSTER_UUID": uuid_})
            from minio import Minio

            s3 = Minio(urlsplit(s3_url).netloc, access_key=creds["ec2_access"],
                       secret_key=creds["ec2_secret"], secure=False, region="us-east-1")

            # one of each first, not counted: connections and caches warm
            for sess, label in ((cluster, "warm-c"), (member, "warm-m")):
                delete_share(sess, provision_share(sess, label)[1])
            driver.provision(f"warm-{uuid.uuid4().hex[:8]}")
            s3.make_bucket(f"warm-{uuid.uuid4().hex[:8]}")

            times: dict[str, list[float]] = {k: [] for k in (
                "share, cluster credential", "share, member token", "bucket, COSI driver",
                "bucket, S3 straight")}
            cosi_cpu = 0.0
            for i in range(args.count):
                for sess, key in ((cluster, "share, cluster credential"),
                                  (member, "share, member token")):
                    seconds, share = provision_share(sess, f"b{i}-{key[7:14].strip()}")
                    times[key].append(seconds)
                    delete_share(sess, share)
                before = driver.cpu()
                times["bucket, COSI driver"].append(driver.provision(f"cosi-{i}-{uuid_[:8]}"))
                cosi_cpu += driver.cpu() - before
                started = time.monotonic()
                s3.make_bucket(f"s3-{i}-{uuid_[:8]}")
                times["bucket, S3 straight"].append(time.monotonic() - started)
                print(f"  round {i + 1}/{args.count}", flush=True)
        finally:
            if driver is not None:
                driver.stop()
            box.stop()

    print()
    print(f"{'':<28} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for key, values in times.items():
        print(f"{key:<28} {median(values) * 1000:>10.0f} {min(values) * 1000:>8.0f} "
              f"{max(values) * 1000:>8.0f}")
    print()
    share = median(times["share, cluster credential"]) / median(times["share, member token"])
    bucket = median(times["bucket, COSI driver"]) / median(times["bucket, S3 straight"])
    print(f"share through the cluster's credential / straight: {share:.2f}")
    print(f"bucket (create + grant) through the COSI driver / S3 CreateBucket straight: "
          f"{bucket:.2f}")
    print(f"COSI driver CPU: {cosi_cpu / args.count * 1000:.1f} ms per bucket (create + grant)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
