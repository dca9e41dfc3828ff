"""Rank 0's one-off work (prepare the run, build the latent cache) under torchrun: an error there ends every rank."""

import os
import socket
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from ldmkit.errors import DataError, LdmkitError
    from ldmkit.training.distributed import setup_distributed, teardown_distributed

    ctx = setup_distributed("cpu")

    def build():
        raise DataError("image folder data/ does not exist")

    assert ctx.on_main(lambda: 7) == (7 if ctx.is_main else None)
    try:
        ctx.on_main(build)
    except LdmkitError as err:
        print(f"rank {ctx.rank}: {err}", flush=True)
    teardown_distributed(ctx)
""")


def test_an_error_on_rank_0_ends_the_other_ranks_with_its_message(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(tmp_path / "script.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0: image folder data/ does not exist" in done.stdout
    assert "rank 1: rank 0 failed: DataError: image folder data/ does not exist" in done.stdout
