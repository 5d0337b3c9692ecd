"""The generic trainer (:mod:`lesionseg.training`): exact equality with a plain loop on the CPU, AMP a no-op
there, a budget without epochs, checkpoints on a fake clock, resume (bit-identical weights and history after
an interrupt), refused checkpoints. The clock is ``time.perf_counter`` patched in the training module; every
training step advances it by one fake minute, so nothing here sleeps."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lesionseg import training
from lesionseg.errors import InputError, OutputExistsError
from lesionseg.training import TrainConfig, Trainer, lr_factor, seed_everything

W = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


class _Terminated(BaseException):
    """Stands for the CLI's ``Terminated`` (SIGTERM): a BaseException that is not an Exception."""


class FakeClock:
    """``time.perf_counter`` stand-in: seconds that only the test advances."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """16 samples of y = x W + noise: x from ``rng`` (numpy), the noise from torch's global generator."""
    x = torch.from_numpy(rng.normal(size=(16, 4)).astype(np.float32))
    return x, x @ W + 0.1 * torch.randn(16, 1)


def make_net(init_seed: int) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.25), nn.Linear(8, 1))


class _Trainer(Trainer):
    """Endless batches from ``self.rng`` and torch (cut by ``steps_per_epoch``), dropout in the net: a resume
    must restore every generator to repeat the run. ``interrupt``: ``(hook, call number, exception)``."""

    def __init__(self, config: TrainConfig, clock: FakeClock | None = None, interrupt: tuple | None = None,
                 init_seed: int = 1, validate_minutes: float = 0.0, net: nn.Module | None = None) -> None:
        super().__init__(make_net(init_seed) if net is None else net, config)
        self.clock, self.interrupt, self.validate_minutes = clock, interrupt, validate_minutes
        self.calls = {"loss": 0, "validate": 0}
        self.lrs: list[float] = []

    def _hook(self, name: str, minutes: float) -> None:
        self.calls[name] += 1
        if self.interrupt is not None and self.interrupt[:2] == (name, self.calls[name]):
            raise self.interrupt[2]
        if self.clock is not None:
            self.clock.now += 60.0 * minutes

    def train_batches(self, epoch):
        while True:
            yield make_batch(self.rng)

    def loss(self, batch):
        self._hook("loss", 1.0)
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return F.mse_loss(self.model(batch[0]), batch[1])

    def validate(self):
        self._hook("validate", self.validate_minutes)
        x = torch.linspace(-1, 1, 12).reshape(3, 4)
        return {"score": -float(F.mse_loss(self.model(x), x @ W))}


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock(1000.0)
    monkeypatch.setattr(training.time, "perf_counter", fake)
    return fake


def config(**kw) -> TrainConfig:
    base = dict(epochs=3, steps_per_epoch=4, lr=0.05, schedule="cosine", seed=3)
    return TrainConfig(**{**base, **kw})


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# --- the loop itself ----------------------------------------------------------------------------------

@pytest.mark.parametrize("amp", [False, True])
def test_trainer_equals_a_plain_loop_bit_for_bit_on_the_cpu(amp):
    cfg = config(epochs=2, steps_per_epoch=3, warmup_epochs=1, amp=amp)
    trainer = _Trainer(cfg)
    result = trainer.fit()
    assert trainer.amp is False and not trainer.scaler.is_enabled()
    net = make_net(1)  # the reference: what the trainer did before checkpoints and AMP existed
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimizer, losses = torch.optim.Adam(net.parameters(), lr=cfg.lr), []
    for epoch in range(2):
        batches = [make_batch(rng) for _ in range(3)]
        net.train()
        for step, (x, y) in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, epoch + step / 3)
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert same_weights(trainer.model.state_dict(), net.state_dict())
    assert [h["loss"] for h in result.history] == [float(np.mean(losses[:3])), float(np.mean(losses[3:]))]
    assert result.steps == 6 and result.resumed is False and [h["steps"] for h in result.history] == [3, 3]


def test_config_validation_and_card_values(tmp_path):
    with pytest.raises(InputError, match="max_minutes"):
        TrainConfig(epochs=None)
    for bad in ({"max_minutes": -1.0}, {"checkpoint_minutes": 0.0}, {"steps_per_epoch": 0}, {"resume": True},
                {"epochs": 0}):
        with pytest.raises(InputError):
            TrainConfig(**bad)
    cfg = TrainConfig(epochs=None, max_minutes=3.0, checkpoint_path=str(tmp_path / "a.ckpt"))
    assert cfg.checkpoint_path == tmp_path / "a.ckpt"
    assert json.loads(json.dumps(cfg.to_dict()))["checkpoint_path"] == str(tmp_path / "a.ckpt")


# --- wall-clock budget ----------------------------------------------------------------------------------

def test_budget_without_epochs_stops_on_time_and_the_schedule_spans_it(clock, caplog, capfd):
    trainer = _Trainer(config(epochs=None, max_minutes=5.0, steps_per_epoch=3, lr=0.1, progress=True), clock)
    with caplog.at_level("INFO", logger="lesionseg.training"):
        result = trainer.fit()
    assert "epoch 1" not in capfd.readouterr().err  # stderr is not a terminal here: no bar, the log line only
    assert "epoch 1, steps 3," in caplog.text and "2.0 min left" in caplog.text and "budget is spent" in caplog.text
    assert result.steps == 5 and [h["steps"] for h in result.history] == [3, 2]  # steps start at 0..4 minutes
    assert [h["minutes"] for h in result.history] == [3.0, 5.0] and result.minutes == 5.0
    assert trainer.lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(5)])
    clock.now = 1000.0  # the 100000-epoch sentinel that methods pass today gives the same learning rates
    sentinel = _Trainer(config(epochs=100000, max_minutes=5.0, steps_per_epoch=3, lr=0.1), clock)
    assert sentinel.fit().steps == 5 and sentinel.lrs == pytest.approx(trainer.lrs, abs=1e-12)


# --- checkpoints and resume ---------------------------------------------------------------------------

def test_checkpoints_every_n_fake_minutes_and_at_epoch_ends(clock, tmp_path, monkeypatch):
    path, written = tmp_path / "run.ckpt", []
    write = training.atomic_write

    def spy(target, writer, **kw):
        out = write(target, writer, **kw)
        run = torch.load(target, weights_only=True)["run"]
        written.append((run["steps"], run["minutes"], run["in_epoch"]))
        return out

    monkeypatch.setattr(training, "atomic_write", spy)
    cfg = config(epochs=2, steps_per_epoch=3, checkpoint_path=path, checkpoint_minutes=2.0)
    _Trainer(cfg, clock, validate_minutes=1.5).fit()
    # steps end at minutes 1, 2 (save), 3; validation to 4.5 (epoch end: save); steps end at 5.5, 6.5 (save),
    # 7.5; the last validation to 9 and the final checkpoint
    assert written == [(2, 2.0, True), (3, 4.5, False), (5, 6.5, True), (6, 9.0, False)]
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["run"]["epoch"] == 2 and len(ckpt["run"]["history"]) == 2 and ckpt["config"]["epochs"] == 2
    assert set(ckpt["run"]["rng"]) == {"python", "numpy", "torch", "cuda", "trainer"}
    assert not list(tmp_path.glob(".*"))  # no temporary left beside it


@pytest.mark.parametrize("interrupt, steps", [(("loss", 7, KeyboardInterrupt()), 6),
                                              (("loss", 5, _Terminated()), 4),
                                              (("validate", 2, KeyboardInterrupt()), 8)],
                         ids=["mid-epoch", "first-step-of-an-epoch", "in-validation"])
def test_interrupt_leaves_a_checkpoint_and_resume_repeats_the_run(tmp_path, interrupt, steps):
    whole_trainer = _Trainer(config(keep="best"))
    whole = whole_trainer.fit()
    path = tmp_path / "run.ckpt"
    cfg = config(keep="best", checkpoint_path=path, checkpoint_minutes=1000.0)
    with pytest.raises(type(interrupt[2])):
        _Trainer(cfg, interrupt=interrupt).fit()
    run = torch.load(path, weights_only=True)["run"]
    assert (run["epoch"], run["in_epoch"], run["steps"], run["done"]) == (1, True, steps, steps - 4)
    resumed_trainer = _Trainer(config(keep="best", checkpoint_path=path, checkpoint_minutes=1000.0, resume=True),
                               init_seed=77)
    resumed = resumed_trainer.fit()
    assert resumed.resumed and resumed.steps == whole.steps == 12
    assert resumed.history == whole.history and (resumed.epoch, resumed.score) == (whole.epoch, whole.score)
    assert same_weights(resumed_trainer.model.state_dict(), whole_trainer.model.state_dict())
    assert same_weights(resumed.state, whole.state)
    assert resumed_trainer.lrs == whole_trainer.lrs[steps:]


def test_an_error_writes_no_checkpoint_and_resume_from_an_epoch_end_repeats_the_run(clock, tmp_path):
    whole_trainer = _Trainer(config(steps_per_epoch=3), clock, validate_minutes=1.5)
    whole = whole_trainer.fit()
    clock.now, path = 1000.0, tmp_path / "run.ckpt"
    cfg = config(steps_per_epoch=3, checkpoint_path=path, checkpoint_minutes=3.5)
    with pytest.raises(RuntimeError):  # after the checkpoint at the end of epoch 1 (4.5 fake minutes)
        _Trainer(cfg, clock, interrupt=("loss", 5, RuntimeError("boom")), validate_minutes=1.5).fit()
    run = torch.load(path, weights_only=True)["run"]
    assert (run["epoch"], run["in_epoch"], run["steps"], run["minutes"]) == (1, False, 3, 4.5)
    resumed_trainer = _Trainer(config(steps_per_epoch=3, checkpoint_path=path, resume=True), clock, init_seed=5,
                               validate_minutes=1.5)
    resumed = resumed_trainer.fit()
    assert resumed.history == whole.history and resumed.minutes == whole.minutes
    assert same_weights(resumed.state, whole.state) and resumed_trainer.lrs == whole_trainer.lrs[3:]


def test_resume_counts_the_minutes_already_spent(clock, tmp_path):
    path = tmp_path / "budget.ckpt"
    cfg = config(epochs=None, max_minutes=5.0, steps_per_epoch=3, checkpoint_path=path)
    with pytest.raises(KeyboardInterrupt):
        _Trainer(cfg, clock, interrupt=("loss", 3, KeyboardInterrupt())).fit()
    clock.now = 0.0  # another process: its clock starts elsewhere
    cfg = config(epochs=None, max_minutes=5.0, steps_per_epoch=3, checkpoint_path=path, resume=True)
    trainer = _Trainer(cfg, clock)
    result = trainer.fit()
    assert result.resumed and result.steps == 5 and [h["steps"] for h in result.history] == [3, 2]
    assert result.minutes == 5.0 and [h["minutes"] for h in result.history] == [3.0, 5.0]
    assert trainer.lrs == pytest.approx([0.05 * 0.5 * (1 + math.cos(math.pi * t / 5)) for t in (2, 3, 4)])
    again = _Trainer(cfg, clock, init_seed=9)  # a finished run resumes to the same result, without a step
    repeat = again.fit()
    assert again.calls["loss"] == 0 and repeat.history == result.history and same_weights(repeat.state, result.state)


def test_checkpoints_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "run.ckpt"
    _Trainer(config(epochs=1, checkpoint_path=path)).fit()
    with pytest.raises(OutputExistsError, match="resume"):  # a new training never replaces a checkpoint
        _Trainer(config(epochs=1, checkpoint_path=path)).fit()
    with pytest.raises(InputError, match="optimizer 'adam' -> 'sgd'"):
        _Trainer(config(epochs=2, optimizer="sgd")).fit(resume_from=path)
    other = _Trainer(config(epochs=2), net=nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.25), nn.Linear(5, 1)))
    with pytest.raises(InputError, match="another network.*0.weight"):
        other.fit(resume_from=path)
    with pytest.raises(InputError, match="no checkpoint"):
        _Trainer(config()).fit(resume_from=tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable"):
        _Trainer(config()).fit(resume_from=tmp_path / "junk.ckpt")
    longer = _Trainer(config(epochs=2)).fit(resume_from=path)  # more epochs: allowed, continues at epoch 2
    assert longer.resumed and [h["epoch"] for h in longer.history] == [1, 2] and longer.steps == 8


def test_resume_without_a_checkpoint_yet_starts_afresh(tmp_path):
    path = tmp_path / "new.ckpt"
    result = _Trainer(config(epochs=1, checkpoint_path=path, resume=True)).fit()
    assert not result.resumed and result.steps == 4 and path.is_file()


def test_an_interrupt_inside_the_optimiser_step_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    trainer = _Trainer(config(checkpoint_path=path, checkpoint_minutes=1000.0))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.optimizer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert not path.exists()  # the weights might be half-updated: no checkpoint rather than a wrong one


def test_the_amp_path_scales_clips_checkpoints_and_resumes_its_scaler(tmp_path):
    """CUDA's AMP path (autocast float16 + GradScaler), forced on the CPU with a CPU scaler."""
    def forced(cfg: TrainConfig, scale: float, **kw) -> _Trainer:
        trainer = _Trainer(cfg, **kw)
        trainer.amp, trainer.scaler = True, torch.amp.GradScaler("cpu", init_scale=scale)
        return trainer

    path = tmp_path / "amp.ckpt"
    with pytest.raises(KeyboardInterrupt):
        forced(config(grad_clip=0.5, checkpoint_path=path), 1024.0, interrupt=("loss", 7, KeyboardInterrupt())).fit()
    assert torch.load(path, weights_only=True)["scaler"]["scale"] == 1024.0
    trainer = forced(config(grad_clip=0.5, checkpoint_path=path, resume=True), 1.0)
    seen = []
    plain_loss = trainer.loss
    trainer.loss = lambda batch: (seen.append(torch.is_autocast_enabled("cpu")), plain_loss(batch))[1]
    result = trainer.fit()
    assert result.steps == 12 and seen == [True] * 6 and trainer.scaler.get_scale() == 1024.0
    assert all(torch.isfinite(v).all() for v in result.state.values())
