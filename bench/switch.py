"""Moving hosts between VLANs on the box's switch through the ngs switch driver.

    .venv/bin/python bench/switch.py [--hosts 50] [--runs 3] [--per-port 5]

Starts a fabric (Open vSwitch in its own namespace, its sshd on 127.0.0.1) with `--hosts` hosts,
then times, through NgsSwitch over SSH with networking-generic-switch's netmiko_ovs_linux driver:
  - moving 1 host from one tenant VLAN to another, and moving all hosts at once (set_many: one
    configuration session), the median of `--runs`; the ratio all-hosts / 1-host;
  - for comparison, ngs called once per port as its ML2 driver does (`--per-port` ports, then
    extrapolated to all hosts), which pays netmiko's idle wait per port.
Everything is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from teapot.drivers.switch.ngs import NgsSwitch  # noqa: E402
from teapot.net.fabric import Fabric  # noqa: E402

A, B = 100, 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-port", type=int, default=5,
                        help="ports to time with one ngs call each (0 to skip)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="teapot-bench-switch-") as tmp:
        fabric = Fabric(tmp)
        try:
            t0 = time.perf_counter()
            fabric.start()
            t_start = time.perf_counter() - t0
            t0 = time.perf_counter()
            hosts = fabric.add_hosts([f"h{i}" for i in range(args.hosts)])
            fabric.add_trunk()
            t_hosts = time.perf_counter() - t0
            print(f"fabric: started in {t_start:.2f} s, {args.hosts} hosts + trunk cabled in "
                  f"{t_hosts:.2f} s")
            sw = NgsSwitch(fabric.name, fabric.device_config())
            t0 = time.perf_counter()
            sw.add_vlans([A, B])
            print(f"add_vlans([{A}, {B}]) (VLANs on the trunk): {time.perf_counter() - t0:.2f} s")
            ports = [h.port for h in hosts]
            sw.set_many({p: A for p in ports})

            one, many = [], []
            vlan = A
            for _ in range(args.runs):
                new = B if vlan == A else A
                t0 = time.perf_counter()
                sw.set_access_vlan(ports[0], new, current=vlan)
                one.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                sw.set_many({p: new for p in ports[1:]} | {ports[0]: new},
                            {p: vlan for p in ports[1:]} | {ports[0]: new})
                many.append(time.perf_counter() - t0)
                assert {fabric.port_vlan(p) for p in ports} == {new}
                vlan = new
            t1, tn = statistics.median(one), statistics.median(many)
            print(f"move 1 host between tenant VLANs:   {t1:.2f} s  (runs: "
                  f"{', '.join(f'{t:.2f}' for t in one)})")
            print(f"move {args.hosts} hosts between tenant VLANs: {tn:.2f} s  (runs: "
                  f"{', '.join(f'{t:.2f}' for t in many)})")
            print(f"ratio {args.hosts} hosts / 1 host: {tn / t1:.2f}")

            t0 = time.perf_counter()
            sw.set_idle({p: vlan for p in ports})
            print(f"release {args.hosts} hosts to the idle VLAN: {time.perf_counter() - t0:.2f} s")
            assert {fabric.port_vlan(p) for p in ports} == {fabric.vlans.idle}
            sw.close()

            if args.per_port:
                from networking_generic_switch import devices

                device = devices.device_manager(dict(fabric.device_config()), "per-port")
                n = min(args.per_port, len(ports))
                t0 = time.perf_counter()
                for p in ports[:n]:
                    device.plug_port_to_network(p, A)
                per = (time.perf_counter() - t0) / n
                print(f"ngs called once per port (as its ML2 driver does): {per:.2f} s per port; "
                      f"{args.hosts} hosts would take ~{per * args.hosts:.1f} s "
                      f"({per * args.hosts / tn:.1f}x the batched move)")
        finally:
            fabric.stop()


if __name__ == "__main__":
    main()
