"""Container health probe: exit 0 when the service answers 200 on /readyz, else 1.

The slim base image has no curl, so the Dockerfile's HEALTHCHECK and docker-compose.yml run this
with the image's own Python. Standard library only; it must start fast and never hang.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("FMNIST_HEALTHCHECK_URL", "http://127.0.0.1:8000/readyz")
TIMEOUT_S = float(os.environ.get("FMNIST_HEALTHCHECK_TIMEOUT", "3"))


def main() -> int:
    if not URL.startswith(("http://", "https://")):  # urlopen would also read file: URLs
        print(f"healthcheck: {URL}: not an http(s) URL", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(URL, timeout=TIMEOUT_S) as response:  # noqa: S310  http(s) only
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:  # HTTPError (e.g. 503) is a URLError
        print(f"healthcheck: {URL}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
