"""`clipbert-emo` with one rank killed mid-run, for tests of `predict --resume` after a distributed run died.

Run as the script of `accelerate launch`: the rank named by PREDICT_KILL_RANK ends itself (os._exit, as SIGKILL
would: no cleanup, no message) right after writing its first result to its part file; the launcher then stops
the other ranks wherever they are.
"""

import os

from clipbert_emo.cli import results_file, run

_add = results_file.ResultsFile.add


def _add_then_die(self, result):
    _add(self, result)
    if ".part" in self.path.name and os.environ.get("RANK") == os.environ.get("PREDICT_KILL_RANK"):
        os._exit(9)


results_file.ResultsFile.add = _add_then_die
run()
