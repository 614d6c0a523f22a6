#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    # The commands people run by hand (`make run`: migrate, then runserver) are development:
    # DEBUG is on unless the environment says otherwise. The production entry point,
    # `uvicorn project.asgi:application`, does not come here, so DEBUG is off there.
    if not os.environ.get("DEBUG"):
        os.environ["DEBUG"] = "1"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
