"""The counting job with the crash points of ``crashhook`` installed (``SP_CRASH=POINT:N``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import crashhook

crashhook.install()

from counting_job import main  # noqa: E402

if __name__ == "__main__":
    main()
