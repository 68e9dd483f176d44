"""Administrative steps of the box's Ceph, over one librados connection as client.admin.

    python -m teapot.deploy.ceph_admin CEPH_CONF ACTION [ARG ...] [-- ACTION ...]

Actions: `import KEYRING` (create the entities of a keyring, or set their keys and caps), `osd ID
UUID` (register an OSD id), `pool NAME APPLICATION` (create a pool unless it exists, tag it),
`fs NAME METADATA DATA` (a CephFS on two pools, unless it exists), `mark FILE` (touch FILE once
every action before it succeeded). Each action is idempotent: a daemon's start runs them again.
The rados module is Debian's (python3-rados), linked into the virtualenv by `make install`.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

PG_NUM = 8  # a box's single OSD: few placement groups per pool


class CephAdminError(Exception):
    pass


def _command(cluster, cmd: dict, inbuf: bytes = b"", ok: tuple[int, ...] = (0,)) -> str:
    ret, out, err = cluster.mon_command(json.dumps(cmd), inbuf, timeout=60)
    if ret not in ok and -ret not in ok:
        raise CephAdminError(f"{cmd['prefix']}: {err or errno.errorcode.get(-ret, ret)}")
    return out.decode() if isinstance(out, bytes) else str(out)


def run(conf: str, actions: list[list[str]]) -> None:
    import rados

    cluster = rados.Rados(conffile=conf, name="client.admin")
    cluster.connect(timeout=60)
    try:
        for action, *args in actions:
            if action == "import":
                _command(cluster, {"prefix": "auth import"}, Path(args[0]).read_bytes())
            elif action == "osd":
                _command(cluster, {"prefix": "osd new", "uuid": args[1], "id": int(args[0])})
            elif action == "pool":
                name, application = args
                pools = json.loads(_command(cluster, {"prefix": "osd pool ls",
                                                      "format": "json"}))
                if name not in pools:
                    _command(cluster, {"prefix": "osd pool create", "pool": name,
                                       "pg_num": PG_NUM}, ok=(0, errno.EEXIST))
                _command(cluster, {"prefix": "osd pool application enable", "pool": name,
                                   "app": application, "yes_i_really_mean_it": True})
            elif action == "fs":
                name, metadata, data = args
                existing = json.loads(_command(cluster, {"prefix": "fs ls", "format": "json"}))
                if not any(fs.get("name") == name for fs in existing):
                    _command(cluster, {"prefix": "fs new", "fs_name": name,
                                       "metadata": metadata, "data": data})
            elif action == "mark":
                Path(args[0]).touch(mode=0o600)
            else:
                raise CephAdminError(f"unknown action {action!r}")
    finally:
        cluster.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    conf, rest = argv[0], argv[1:]
    actions: list[list[str]] = [[]]
    for word in rest:
        if word == "--":
            actions.append([])
        else:
            actions[-1].append(word)
    try:
        run(conf, [a for a in actions if a])
    except (CephAdminError, OSError) as e:
        print(f"ceph: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # rados errors (timeouts, refused connections)
        print(f"ceph: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
