"""Coverage-guided fuzz target for the PROXY protocol parser (atheris/libFuzzer).

Each input is parsed in one read and byte by byte: neither may raise, a header found in
one must be the same header in the other, and what follows a header must be kept whole.

    pip install atheris
    python fuzz/fuzz_proxy.py -max_total_time=60 [corpus_dir]
    python fuzz/fuzz_proxy.py crash-file ...   # replay, works without atheris
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

try:
    import atheris
except ImportError:  # replaying inputs still works without it
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from smtpgate.smtp import proxy
else:
    from smtpgate.smtp import proxy


def run(data: bytes, split: bool) -> tuple[object, bytes]:
    parser = proxy.ProxyParser()
    event: object = proxy.NEED_DATA
    for chunk in ([data[i:i + 1] for i in range(len(data))] if split else [data]):
        parser.receive_data(chunk)
        event = parser.next_event()
        if event is not proxy.NEED_DATA:
            break
    return event, parser.rest


def test_one_input(data: bytes) -> None:
    whole, rest = run(data, split=False)
    split, _ = run(data, split=True)
    if isinstance(whole, proxy.ProxyHeader):
        assert split == whole, (whole, split)
        assert data.endswith(rest)
    assert whole is proxy.NEED_DATA or isinstance(whole, (proxy.ProxyHeader, proxy.ProxyViolation))


def main() -> None:
    if atheris is None:
        for name in sys.argv[1:]:
            test_one_input(Path(name).read_bytes())
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
