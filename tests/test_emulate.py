import torch

from ddm.config import DistillConfig
from ddm.distill.matching import init_synset
from ddm.emulate import (
    emulate_logits,
    finetune_batched,
    finetune_reference,
    image_weights,
    linear_step,
    perturbation_weights,
    sample_perturbations,
    synset_gradients,
)


def synset_for(digits, groups, ipc=1):
    return init_synset(digits.train, groups, DistillConfig(ipc=ipc), 10)


def test_batched_finetuning_equals_the_plain_loop(trained, digits, groups):
    model, traj = trained
    syn = synset_for(digits, groups, ipc=2)
    deleted = ~sample_perturbations(groups.num_groups, 5, 0.6, seed=1)
    for reduction in ("sum", "mean"):
        batched = finetune_batched(model, traj.final, syn, deleted, lr=0.05, steps=4, reduction=reduction)
        for i in range(len(deleted)):
            ref = finetune_reference(model, traj.final, syn, deleted[i], lr=0.05, steps=4, reduction=reduction)
            for n in ref:
                assert torch.allclose(batched[n][i], ref[n], atol=1e-5), (reduction, i, n)


def test_linear_emulation_is_one_sgd_step_and_first_order_in_the_step(trained, digits, groups):
    model, traj = trained
    syn = synset_for(digits, groups, ipc=2)
    deleted = ~sample_perturbations(groups.num_groups, 4, 0.6, seed=2)
    grads = synset_gradients(model, traj.final, syn)
    assert all(g.shape == (len(syn.flat()[0]), *traj.final[n].shape) for n, g in grads.items())
    for reduction in ("sum", "mean"):  # one step of length lr: exactly one SGD step
        one = finetune_batched(model, traj.final, syn, deleted, lr=0.05, steps=1, reduction=reduction)
        lin = linear_step(traj.final, grads, deleted, syn.ipc, lr=0.05, steps=1, reduction=reduction)
        assert all(torch.allclose(one[n], lin[n], atol=1e-6) for n in one)

    def gap(lr):  # distance of 4 fine-tuning steps from the linear step of the same length, relative to the move
        tuned = finetune_batched(model, traj.final, syn, deleted, lr=lr, steps=4)
        lin = linear_step(traj.final, grads, deleted, syn.ipc, lr=lr, steps=4)
        num = sum(float((tuned[n] - lin[n]).norm() ** 2) for n in tuned) ** 0.5
        return num / sum(float((lin[n] - traj.final[n]).norm() ** 2) for n in lin) ** 0.5

    assert gap(1e-4) < 0.1 * gap(1e-2)  # the gap shrinks with the step: agreement to first order
    x = digits.test.x[:3]
    logits = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 1, chunk_size=3, method="linear")
    assert torch.allclose(logits, emulate_logits(model, traj.final, syn, deleted, x, 0.05, 1), atol=1e-4)


def test_no_deletion_leaves_the_model_unchanged(trained, digits, groups):
    model, traj = trained
    syn = synset_for(digits, groups)
    out = finetune_batched(model, traj.final, syn, torch.zeros(1, groups.num_groups, dtype=torch.bool), 0.1, 3)
    for n, v in traj.final.items():
        assert torch.equal(out[n][0], v)


def test_image_weights():
    d = torch.tensor([[True, False, True]])
    assert image_weights(d, 2, "sum").tolist() == [[0.5, 0.5, 0, 0, 0.5, 0.5]]
    assert image_weights(d, 1, "mean").tolist() == [[0.5, 0, 0.5]]


def test_perturbations_and_their_weights():
    keep = sample_perturbations(50, 400, 0.8, seed=0)
    assert keep.shape == (400, 50) and keep.dtype == torch.bool
    assert abs(keep.float().mean().item() - 0.8) < 0.02
    assert torch.equal(keep, sample_perturbations(50, 400, 0.8, seed=0))
    # drawn in chunks of rows for large K: the same masks as one draw
    assert torch.equal(keep, torch.rand(400, 50, generator=torch.Generator().manual_seed(0)) < 0.8)
    assert torch.equal(keep, sample_perturbations(50, 400, 0.8, seed=0, chunk_entries=120))
    k = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    assert perturbation_weights(k, "inverse_deletions").tolist() == [1.0, 1.0, 0.5]
    assert perturbation_weights(k, "uniform").tolist() == [1.0, 1.0, 1.0]


def test_emulation_rows_are_written_and_reused(trained, digits, groups, tmp_path):
    model, traj = trained
    syn = synset_for(digits, groups)
    deleted = ~sample_perturbations(groups.num_groups, 7, 0.5)
    x = digits.test.x[:4]
    first = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, chunk_size=3, rows_dir=tmp_path)
    assert first.shape == (7, 4, 10)
    assert len(list(tmp_path.glob("chunk_*.safetensors"))) == 3
    # a rerun reads the stored rows instead of recomputing (prove it by tampering with one)
    from safetensors.torch import save_file
    save_file({"logits": torch.zeros(3, 4, 10)}, str(tmp_path / "chunk_00000.safetensors"))
    again = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, chunk_size=3, rows_dir=tmp_path)
    assert torch.equal(again[:3], torch.zeros(3, 4, 10)) and torch.equal(again[3:], first[3:])


def test_loop_backend_matches_vmap(trained, digits, groups):
    model, traj = trained
    syn = synset_for(digits, groups)
    deleted = ~sample_perturbations(groups.num_groups, 5, 0.5, seed=3)
    x = digits.test.x[:4]
    a = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 3, chunk_size=2, backend="vmap")
    b = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 3, chunk_size=2, backend="loop")
    assert torch.allclose(a, b, atol=1e-5)


def test_auto_backend_is_the_loop_on_the_cpu(trained, digits, groups):
    from ddm.emulate.emulators import EMULATORS, Emulation

    model, traj = trained
    syn = synset_for(digits, groups, ipc=2)
    deleted = ~sample_perturbations(groups.num_groups, 3, 0.5, seed=5)
    x = digits.test.x[:6]
    auto = EMULATORS.get("finetune")(Emulation(model, traj.final, syn, deleted, x, 0.05, 2, backend="auto"))
    loop = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, backend="loop")
    assert torch.equal(auto, loop)


def test_a_fine_tuning_emulation_killed_at_any_row_write_resumes_to_the_same_logits(trained, digits, groups,
                                                                                    tmp_path, killed_at_write):
    import ddm.emulate.batched as batched

    model, traj = trained
    syn = synset_for(digits, groups)
    deleted = ~sample_perturbations(groups.num_groups, 7, 0.5, seed=3)
    x = digits.test.x[:5]
    whole = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, chunk_size=2, backend="loop")
    for kill_at in range(4):  # one write per chunk of 2 perturbations
        rows = tmp_path / f"k{kill_at}"
        with killed_at_write(batched, kill_at):
            emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, chunk_size=2, rows_dir=rows, backend="loop")
        again = emulate_logits(model, traj.final, syn, deleted, x, 0.05, 2, chunk_size=2, rows_dir=rows,
                               backend="loop")
        assert torch.equal(again, whole), kill_at
