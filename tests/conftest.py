"""Shared test setup: hypothesis profiles (CI is derandomized so a red run reproduces), tiny models."""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# one thread per test process under pytest-xdist (`make test` runs one worker per core: two trainings on
# two threads each slow each other many times over), up to two threads otherwise
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, torch.get_num_threads())))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # and the bitcheck processes a test starts (CLI runs, own_loop.py, torchrun)


@pytest.fixture
def tiny_cfg():
    from bitcheck.bitnet.config import ModelConfig
    return ModelConfig(vocab_size=21, n_embd=32, n_layer=2, n_head=4, n_kv_head=2, ffn_hidden=64, block_size=64)


@pytest.fixture(scope="session")
def user_files(tmp_path_factory):
    """A user's own model (tests/user_models.py) with a real BPE (320 tokens) and generated stories:
    its tokenizer, a text to diagnose with, and checkpoints their own trainer wrote. init.pt: fresh;
    trained.pt: 800 steps; half.pt: 100 steps (learned, but poor samples); shifted2.pt: 400 steps on
    labels shifted twice (its loss against the next token 6.11 vs ln V 5.77; label_offset's gain 3.73 nats);
    tied.pt: a tied-head model (400 steps: INFRASTRUCTURE OK, text loss 1.94) saved without the duplicate head
    key; prefixed.pt: trained.pt with every key under 'model.'. About 70 s of training (1 thread), once per test session: under
    pytest-xdist the first worker builds it under a file lock and the others read it."""
    from filelock import FileLock
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of one session
    d = root / "user_files"
    with FileLock(str(root / "user_files.lock")):
        if not (d / "done").is_file():
            d.mkdir(exist_ok=True)
            _write_user_files(d)
            (d / "done").write_text("")
    return d


def _write_user_files(d):
    from bitcheck.bitnet.tokenizer import train_bpe
    from synthetic.stories import generate_stories, stories_text
    from tests.user_models import UserLM, train
    tok = train_bpe(generate_stories(1000), 320)
    tok.save(str(d / "tokenizer.json"))
    (d / "text.txt").write_text(stories_text(60, seed=1))
    ids = torch.tensor(tok.encode(stories_text(600, seed=2)).ids)
    torch.manual_seed(0)
    torch.save(UserLM(320).state_dict(), d / "init.pt")
    trained = train(UserLM(320), ids, 800)
    torch.save(trained.state_dict(), d / "trained.pt")
    torch.save({"model." + k: v for k, v in trained.state_dict().items()}, d / "prefixed.pt")
    torch.manual_seed(1)
    # 100 steps: loss 3.00 vs the unigram 4.20 (learned), samples' known-word ratio 0.42 (gibberish FAILs
    # below 0.5). Measured with tokenizers 0.23.3, 1 and 2 threads alike; 300 steps, the earlier choice,
    # now writes 0.61 (WARN): the BPE a tokenizers release trains changes what a step count buys.
    torch.save(train(UserLM(320), ids, 100).state_dict(), d / "half.pt")
    torch.save(train(UserLM(320), ids, 400, offset=2).state_dict(), d / "shifted2.pt")
    tied = train(UserLM(320, tie=True), ids, 400).state_dict()
    torch.save({k: v for k, v in tied.items() if k != "head.weight"}, d / "tied.pt")


# fixtures that train before their tests run: a test that asks for one is a `training` test (make test-fast
# skips it) without each of them saying so
TRAINING_FIXTURES = {"user_files",  # 1,700 steps of the user's LM, ~70-120 s
                     "reports",     # tests/test_report_schema.py: a run or diagnosis per mode, ~50 s
                     "ckpt"}        # tests/test_diagnose.py and test_export.py: a 30-step quick-arith run, ~20 s


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    """Mark the tests whose fixtures train, then put the long runs first (slow, then training): under
    pytest-xdist the workers then share the short tests at the end instead of one worker finishing a long
    run alone."""
    fixture_marked = set()
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("training") is None:
            item.add_marker(pytest.mark.training)
            fixture_marked.add(item.nodeid)
    # only the tests that train themselves go first: with the ~45 fixture-marked tests first as well, a fresh
    # clone's make test ran the user-loop trainings last and took over 20 minutes (15.3-16.1 before); the
    # fixture's tests wait on its file lock while one worker builds it
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                 item.get_closest_marker("training") is None or item.nodeid in fixture_marked,
                                 not item.nodeid.startswith(LONGEST)))


# The longest single tests of `make test` (--durations, 2 workers): first of all, so neither worker ends the run
# alone on one of them. Started in file order, the selftest (~180 s) began at 630 s of an 816 s run and ran alone.
LONGEST = ("tests/test_selftest.py::test_selftest_fast_subset",
           "tests/test_own_infrastructure.py::test_planted_bugs_in_the_users_loop")
