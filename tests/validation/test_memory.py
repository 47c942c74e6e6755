"""Constant memory: a million lines validate with bounded RSS growth and a bounded report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import json, resource, sys
from pathlib import Path
from tunebridge.validation import validate_file

path = Path(sys.argv[1])
with path.open("wb") as out:
    for n in range(1_000_000):
        out.write(b'{"text": "example %d"}\\n' % n if n % 10 else b'{"text": "x", "k": %d}\\n' % n)
warm = path.with_suffix(".warm")
warm.write_bytes(b'{"text": "warm up"}\\n')
validate_file(warm)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = validate_file(path, backend="local")
growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"growth_mb": growth_mb, "size_mb": path.stat().st_size / 2**20,
                  "examples": report.num_examples, "kept": len(report.problems),
                  "errors": dict(report.error_counts), "exact": report.duplicates_exact}))
"""


def test_million_lines_validate_with_bounded_rss_growth(tmp_path: Path) -> None:
    """Holding the lines would cost hundreds of MB; we allow the duplicate-hash table (24 MiB
    at this size, twice that while it rehashes) plus slack, and nothing that scales with text."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "big.jsonl")],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["examples"] == 1_000_000
    assert result["kept"] == 100 and result["errors"] == {"unknown_key": 100_000}
    assert result["exact"] is True
    assert result["growth_mb"] < 80, result
