"""host/upload.py on the virtual board's raw REPL when bytes are lost on the way: a block the
board cannot run is sent again at its offset, a file that does not verify is uploaded again,
and a loss that persists fails with one line while the previous file stays."""
import random

import pytest

from host.errors import UserError
from host.upload import BLOCK_ATTEMPTS, CHUNK, FILE_ATTEMPTS, Uploader, crc32

TARGET = "/flash/blob.bin"


class LossyRepl(object):
    """The real raw REPL, with bytes cut out of chosen block-writing execs on their way to
    the board, as an overflowing UART ring loses them (`losses`: exec number -> cut)."""

    def __init__(self, repl, losses):
        self.repl = repl
        self.losses = dict(losses)
        self.block_execs = 0

    def exec(self, code, timeout=10.0):
        if code.startswith("_kf.seek("):
            self.block_execs += 1
            cut = self.losses.get(self.block_execs)
            if cut is not None:
                at = code.index("_kw(b'") + 6 + 100
                code = code[:at] + code[at + cut:]
        return self.repl.exec(code, timeout)


def _data(n):
    return bytes(random.Random(n).getrandbits(8) for _ in range(n))


def test_a_block_the_board_cannot_run_is_sent_again_at_its_offset(vboard_repl):
    handle, _, repl = vboard_repl
    port = handle.port
    data = _data(5 * CHUNK + 100)              # three blocks of two lines
    lossy = LossyRepl(repl, {2: 1})            # one character lost: "Incorrect padding"
    up = Uploader(lossy, port)
    assert up.upload(TARGET, data) == "written"
    assert up.resent_blocks == 1 and up.resent_files == 0
    assert Uploader(repl, port).stat(TARGET) == (len(data), crc32(data))


def test_a_file_that_does_not_verify_is_uploaded_again(vboard_repl):
    handle, _, repl = vboard_repl
    port = handle.port
    data = _data(3 * CHUNK)
    lossy = LossyRepl(repl, {1: 4})            # a whole base64 group lost: runs, wrong bytes
    up = Uploader(lossy, port)
    assert up.upload(TARGET, data) == "written"
    assert up.resent_files == 1
    assert Uploader(repl, port).stat(TARGET) == (len(data), crc32(data))


def test_a_loss_on_every_attempt_fails_in_one_line_and_keeps_the_previous_file(vboard_repl):
    handle, _, repl = vboard_repl
    port = handle.port
    old = _data(1000)
    assert Uploader(repl, port).upload(TARGET, old) == "written"
    data = _data(2 * CHUNK)                    # one block per attempt, each one cut
    lossy = LossyRepl(repl, dict((i, 4) for i in range(1, FILE_ATTEMPTS + 1)))
    with pytest.raises(UserError) as err:
        Uploader(lossy, port).upload(TARGET, data)
    msg = str(err.value)
    assert "did not verify %d times" % FILE_ATTEMPTS in msg and "\n" not in msg
    assert Uploader(repl, port).stat(TARGET) == (len(old), crc32(old))
    assert Uploader(repl, port).stat(TARGET + ".part") == (-1, 0)


def test_a_block_that_fails_every_time_names_the_file(vboard_repl):
    handle, _, repl = vboard_repl
    port = handle.port
    lossy = LossyRepl(repl, dict((i, 1) for i in range(1, BLOCK_ATTEMPTS + 1)))
    with pytest.raises(UserError) as err:
        Uploader(lossy, port).upload(TARGET, _data(CHUNK))
    assert "writing %s.part" % TARGET in str(err.value)
