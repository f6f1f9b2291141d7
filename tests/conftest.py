import sys
from pathlib import Path

# Make the test helpers importable from subprocesses too (they run with cwd=tests/).
sys.path.insert(0, str(Path(__file__).parent))

import os

from hypothesis import settings

# CI runs the same examples every time (a failure there reproduces locally with CI=true).
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
