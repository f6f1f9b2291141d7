import sys
from pathlib import Path

# Make the test helpers importable from subprocesses too (they run with cwd=tests/).
sys.path.insert(0, str(Path(__file__).parent))
