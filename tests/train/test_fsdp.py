"""FSDP2 on 2 gloo ranks: one SGD step equals the single-process full-batch step; the gathered full
state dict saves as a normal checkpoint that ``load_checkpoint`` reads."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.ranks import as_rank, free_port

from xmodal.config import load_config, to_dict
from xmodal.losses import clip_loss
from xmodal.losses.distributed import gathered_loss
from xmodal.models.factory import build_model
from xmodal.models.io import load_checkpoint

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"
N = 8


def _setup() -> tuple[torch.nn.Module, dict[str, object]]:
    cfg = load_config(RECIPE)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    g = torch.Generator().manual_seed(3)
    return model, {
        "image": torch.randn(N, 3, 32, 32, generator=g),
        "text": [f"emoji {i} {'x' * i}" for i in range(N)],
    }


def _step(model: torch.nn.Module, inputs: dict[str, object]) -> torch.Tensor:
    out = model(**inputs)
    loss = gathered_loss(clip_loss, out["image_features"], out["text_features"], out["logit_scale"])
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    return loss.detach()


def _worker(rank: int, world: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        from torch.distributed.tensor import DTensor

        from xmodal.train.fsdp import full_state_dict, save_full_model, shard_clip

        model, inputs = _setup()
        shard_clip(model)
        assert all(isinstance(p, DTensor) for p in model.image_head.parameters())  # really sharded
        b = N // world
        images, texts = inputs["image"], inputs["text"]
        assert isinstance(images, torch.Tensor) and isinstance(texts, list)
        loss = _step(
            model, {"image": images[rank * b : (rank + 1) * b], "text": texts[rank * b : (rank + 1) * b]}
        )
        state = full_state_dict(model)  # every rank takes part; rank 0 gets the tensors
        save_full_model(Path(out) / "model", model, {"config": to_dict(load_config(RECIPE))})
        if rank == 0:
            torch.save({"loss": loss, "state": state}, f"{out}/rank0.pt")
        else:
            assert state == {}
    finally:
        dist.barrier()
        dist.destroy_process_group()


def test_fsdp2_step_and_checkpoint_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    model, inputs = _setup()
    loss = _step(model, inputs)
    got = torch.load(tmp_path / "rank0.pt", weights_only=True)
    torch.testing.assert_close(got["loss"], loss, rtol=1e-6, atol=1e-6)
    ref = model.state_dict()
    assert set(got["state"]) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(got["state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    loaded, _ = load_checkpoint(tmp_path / "model")  # a plain checkpoint, strict keys and shapes
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, got["state"][k]), k


TRAIN = [
    "train.steps=2",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "data.batch_size=16",
    "eval.max_images=32",
    "data.hard_negatives.generators=[swap_relation]",
]


def _train_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    as_rank(rank, world, port)
    from xmodal.train import distributed
    from xmodal.train.loop import Trainer

    try:
        cfg = load_config(RECIPE, [*TRAIN, "train.fsdp=true"])
        Trainer(cfg, Path(run_dir), progress=False).fit(stop_after=1)  # "crash" after a checkpoint
        Trainer(cfg, Path(run_dir), progress=False).fit(resume=True)  # sharded restore
    finally:
        distributed.teardown()


def test_fsdp2_trainer_with_resume_matches_one_process_and_writes_plain_checkpoints(tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file

    from xmodal.train.loop import Trainer

    port = free_port()
    mp.spawn(_train_worker, args=(2, port, str(tmp_path / "fsdp")), nprocs=2, join=True)
    single = Trainer(load_config(RECIPE, TRAIN), tmp_path / "single", progress=False)
    single.fit()
    sharded, _ = load_checkpoint(tmp_path / "fsdp" / "model")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[k], v, rtol=1e-4, atol=1e-5, msg=k)
    last, _ = load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "last")  # the training checkpoint too
    assert set(last.state_dict()) == set(v for v in single.model.state_dict())
    opt_f = load_file(str(tmp_path / "fsdp" / "checkpoints" / "last" / "optimizer.safetensors"))
    opt_s = load_file(str(tmp_path / "single" / "checkpoints" / "last" / "optimizer.safetensors"))
    moments = {k for k in opt_s if k.startswith("state.")}  # the usual layout: state.<index>.<name>
    assert moments and {k for k in opt_f if k.startswith("state.")} == moments
    for k, v in opt_s.items():
        if k.startswith("state."):
            torch.testing.assert_close(opt_f[k], v, rtol=1e-3, atol=1e-6, msg=k)
    state = json.loads((tmp_path / "fsdp" / "summary.json").read_text())
    assert state["world_size"] == 2
