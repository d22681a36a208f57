"""A run that finished must not end in a UnicodeEncodeError because the terminal is ASCII (CI and some servers
run with LC_ALL=C and PYTHONUTF8=0): the tables print '?' for what the locale cannot show."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from tskd.cli.main import tolerate_narrow_output


def test_an_ascii_stream_prints_a_question_mark_for_what_it_cannot_show() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    tolerate_narrow_output(stream)
    print("0.953 ± 0.085 – done", file=stream)
    stream.flush()
    assert raw.getvalue() == b"0.953 ? 0.085 ? done\n"


def test_a_utf8_stream_is_left_strict_and_whole() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    tolerate_narrow_output(stream)
    assert stream.errors == "strict"
    print("0.953 ± 0.085", file=stream)
    stream.flush()
    assert raw.getvalue().decode("utf-8") == "0.953 ± 0.085\n"


def test_the_console_script_sets_it_up_under_an_ascii_locale() -> None:
    code = ("import sys; from tskd.cli import main as m; m._main = lambda argv: print('a \\u00b1 b') or 0; "
            "sys.exit(m.main([]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""})
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert done.stdout == b"a ? b\n"
