"""Run a command as another UID (group 0, as the official Airflow image expects), from a root init step."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    uid, command = int(argv[0]), argv[1:]
    # an AIRFLOW_UID with no /etc/passwd entry still has a user name for tools that ask (getpass)
    os.environ.setdefault("USER", "airflow")
    os.environ.setdefault("LOGNAME", os.environ["USER"])
    os.setgroups([0])
    os.setgid(0)
    os.setuid(uid)
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
