"""``verl_rlif.files``: outputs are whole or absent, and writing one never replaces what is not a regular file."""

import os
import stat

from verl_rlif.files import atomic_output


def test_a_fifo_or_device_is_written_in_place_not_replaced(tmp_path):
    # `--output /dev/null` as root once renamed a temporary file over the device node; a FIFO stands in for it here
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening the write end does not block
    try:
        with atomic_output(str(fifo), binary=True) as f:
            f.write(b"line\n")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 100) == b"line\n"
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_symlink_is_followed_and_kept(tmp_path):
    target, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    with atomic_output(str(link)) as f:
        f.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
