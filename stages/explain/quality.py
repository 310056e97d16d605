"""How far an explanation can be trusted, measured: faithfulness (deletion and insertion curves), the
model-randomisation sanity check of Adebayo et al. (2018) and stability across fold models and random draws; and
``trust``, which runs them for one method of one model and writes their tables and figures.

Both work on the model's input elements (features of a vector, pixels or voxels of every channel): with one gene
per pixel (lsa) an element is a gene.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from shared.attribution_figures import plot_faithfulness
from shared.evaluation.layout_sensitivity import top_k_agreement
from shared.evaluation.rankings import class_means
from shared.logs import get_logger

from .attributions import members, training_mean
from .inputs import ExplainedModel, ModelInputs, subset
from .methods import METHODS, make_method
from .params import Explain

log = get_logger("stages.explain")


def _probabilities(model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch: int = 512) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            p = torch.softmax(model(x[start : start + batch]).float(), dim=1)
            out.append(p.gather(1, target[start : start + batch, None])[:, 0].cpu())
    return torch.cat(out).numpy()


def curves(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, order: np.ndarray, steps: int, baseline: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves, (n, steps + 1) true-class probabilities each.

    order: (n, n_elements) element indices, most important first. Deletion replaces the first k elements of the
    order by the baseline's values; insertion starts from the baseline and puts back the first k."""
    n, flat = len(x), x.reshape(len(x), -1)
    base = baseline.reshape(len(x), -1)
    n_el = flat.shape[1]
    counts = np.unique(np.round(np.linspace(0, n_el, steps + 1)).astype(int))
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(n_el)[None, :]
    rank_t = torch.from_numpy(rank).to(x.device)
    deletion, insertion = [], []
    for k in counts:
        top = rank_t < int(k)  # (n, n_el): the k most important elements of each sample
        deletion.append(_probabilities(model, torch.where(top, base, flat).reshape(x.shape), target))
        insertion.append(_probabilities(model, torch.where(top, flat, base).reshape(x.shape), target))
    return np.stack(deletion, 1), np.stack(insertion, 1)


def area(curve: np.ndarray) -> np.ndarray:
    """Area under each row of (n, points) over fractions evenly spaced in [0, 1] (trapezoid rule)."""
    return np.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), axis=1)


def ranking(attr: np.ndarray, signed: bool) -> np.ndarray:
    """(n, ...) attributions -> (n, n_elements) element order, most important first (ties in index order)."""
    flat = attr.reshape(len(attr), -1)
    key = flat if signed else np.abs(flat)
    return np.argsort(-key, axis=1, kind="stable")


def random_curves(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves of a random order per sample (seeded): the reference of every method."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((len(x), int(np.prod(x.shape[1:])))), axis=1)
    return curves(model, x, target, order, steps, training_mean(model, x))


def faithfulness(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    attr: np.ndarray,
    signed: bool,
    steps: int,
    seed: int,
    margin: float = 0.0,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Deletion/insertion AUCs of a method's order beside a random order's, per sample, with the verdict.

    A faithful ranking makes the true-class probability fall fast when its top elements are deleted (low deletion
    AUC) and rise fast when they are inserted (high insertion AUC). The method is "no better than random" unless its
    deletion AUC is lower than the random order's (by more than ``margin``) with a one-sided Wilcoxon signed-rank
    p < 0.05 over the samples, and its insertion AUC higher than the random order's in the same sense: an order
    that finds the evidence a model can lose but not the evidence it needs (or the reverse) is not faithful."""
    d, i = curves(model, x, target, ranking(attr, signed), steps, training_mean(model, x))
    rd, ri = reference if reference is not None else random_curves(model, x, target, steps, seed)
    del_auc, ins_auc, rdel_auc, rins_auc = area(d), area(i), area(rd), area(ri)

    def beats(gain: np.ndarray) -> tuple[float, bool]:
        p = float(stats.wilcoxon(gain, alternative="greater").pvalue) if np.any(gain != 0) else 1.0
        return p, bool(gain.mean() > margin and p < 0.05)

    p_del, del_ok = beats(rdel_auc - del_auc)
    p_ins, ins_ok = beats(ins_auc - rins_auc)
    return {
        "deletion_auc": del_auc,
        "insertion_auc": ins_auc,
        "random_deletion_auc": rdel_auc,
        "random_insertion_auc": rins_auc,
        "deletion_curve": d.mean(0),
        "insertion_curve": i.mean(0),
        "random_deletion_curve": rd.mean(0),
        "random_insertion_curve": ri.mean(0),
        "p_deletion": p_del,
        "p_insertion": p_ins,
        "deletion_better_than_random": del_ok,
        "insertion_better_than_random": ins_ok,
        "better_than_random": del_ok and ins_ok,
    }


def cascade_blocks(model: nn.Module) -> list[str]:
    """The fold models' top-level blocks with parameters, from the output back to the input (the cascade's
    order): for ``Sequential(Standardize, net)``, the children of ``net`` (e.g. fc, layer4, ..., conv1)."""
    member = members(model)[0]
    net, prefix = (member[1], "1.") if isinstance(member, nn.Sequential) and len(member) == 2 else (member, "")
    while True:  # a network that wraps one container (DenseNet.layers) is cascaded through its children
        children = [(n, c) for n, c in net.named_children() if any(True for _ in c.parameters())]
        if len(children) != 1 or not any(True for _ in children[0][1].children()):
            break
        prefix, net = f"{prefix}{children[0][0]}.", children[0][1]
    return [f"{prefix}{name}" for name, _ in children][::-1]


def _reinitialise(module: nn.Module, generator_seed: int) -> None:
    torch.manual_seed(generator_seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def randomisation(
    model: nn.Module,
    make,
    x: torch.Tensor,
    target: torch.Tensor,
    trained_attr: np.ndarray,
    seed: int,
) -> dict:
    """Adebayo et al. (2018): re-initialise the network top-down, block by block (cascading), and all at once; the
    Spearman rank correlation between each sample's trained and randomised attributions (absolute values, as the
    maps are read), its mean over samples at each step. ``make(network)``: the method of a network."""

    def correlation(randomised: nn.Module) -> float:
        attr = make(randomised).attribute(x.clone().requires_grad_(True), target).detach()
        a = np.abs(trained_attr.reshape(len(x), -1))
        b = np.abs(attr.cpu().numpy().reshape(len(x), -1))
        rho = [
            stats.spearmanr(a[k], b[k]).statistic if a[k].std() > 0 and b[k].std() > 0 else 0.0 for k in range(len(x))
        ]
        return float(np.nanmean(rho))

    blocks = cascade_blocks(model)
    cascade, randomised = [], copy.deepcopy(model).eval()
    for step, name in enumerate(blocks):
        for member in members(randomised):
            _reinitialise(dict(member.named_modules())[name], seed + step)
        cascade.append({"randomised_down_to": name.removeprefix("1."), "spearman": correlation(randomised)})
    independent = copy.deepcopy(model).eval()
    for member in members(independent):
        for step, name in enumerate(blocks):
            _reinitialise(dict(member.named_modules())[name], seed + 1000 + step)
    return {"cascade": cascade, "all_at_once": correlation(independent)}


def agreement(class_scores: list[np.ndarray], classes: list[str], k: int) -> dict:
    """Pairwise agreement of several (n_classes, n_genes) class-mean rankings (fold models, or repeated draws of a
    stochastic method): per class and overall, the mean over pairs of ``top_k_agreement`` (the Spearman
    correlation of the genes' scores, and the fraction of the top ``k`` genes shared)."""
    per_class = {}
    for c, name in enumerate(classes):
        pairs = [
            top_k_agreement(class_scores[i][c], class_scores[j][c], k)
            for i in range(len(class_scores))
            for j in range(i + 1, len(class_scores))
        ]
        rho, shared = np.asarray(pairs, dtype=float).T
        if not np.isnan(shared).all():
            per_class[name] = {"spearman": float(np.nanmean(rho)), "shared_top_k": float(np.nanmean(shared))}
    return {
        "n": len(class_scores),
        "top_k": k,
        "spearman": float(np.nanmean([v["spearman"] for v in per_class.values()])),
        "shared_top_k": float(np.mean([v["shared_top_k"] for v in per_class.values()])),
        "per_class": per_class,
    }


# ------------------------------------------------------------------------------------ the checks of a method
def trust(explained: ExplainedModel, method_name: str, settings: Explain, attr, folder: Path) -> dict:
    """Faithfulness, sanity and stability figures of one method (each on a bounded subset of the explained
    samples; ``attr[rows]`` their attributions: an array or the ``KeptRows`` of explain_method); the model's
    ``cache`` keeps the random order's curves, the same reference for every method of a model."""
    model, data, classes, cache = explained.model, explained.data, explained.classes, explained.cache
    device, seed = explained.device, explained.seed
    out: dict = {}
    method_cls = METHODS[method_name]
    if settings.faithfulness.enabled:
        t0 = time.time()
        rows = subset(data.labels, settings.faithfulness.max_samples)
        x, target = data.tensors(rows, device)
        if "random" not in cache:
            cache["random"] = random_curves(model, x, target, settings.faithfulness.steps, seed)
        f = faithfulness(
            model,
            x,
            target,
            attr[rows],
            method_cls.signed,
            settings.faithfulness.steps,
            seed,
            settings.faithfulness.margin,
            reference=cache["random"],
        )
        aucs = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")
        table = pd.DataFrame(
            {
                "sample": data.samples["sample"].to_numpy()[rows],
                "class": np.asarray(classes)[data.labels[rows]],
                **{k: f[k] for k in aucs},
            }
        )
        table.to_csv(folder / "faithfulness.csv", index=False)
        per_class = table.groupby("class", sort=False)[list(aucs)].mean()
        plot_faithfulness(f, folder / "figures" / "faithfulness.png", method_name)
        out["faithfulness"] = {
            "n_samples": int(len(rows)),
            "steps": settings.faithfulness.steps,
            **{k: float(table[k].mean()) for k in aucs},
            **{
                k: f[k]
                for k in (
                    "p_deletion",
                    "p_insertion",
                    "deletion_better_than_random",
                    "insertion_better_than_random",
                    "better_than_random",
                )
            },
            "per_class": {c: {k: float(v) for k, v in r.items()} for c, r in per_class.iterrows()},
            "seconds": round(time.time() - t0, 2),
        }
        log.info(
            "%s: deletion AUC %.3f (random %.3f), insertion AUC %.3f (random %.3f)%s",
            method_name,
            out["faithfulness"]["deletion_auc"],
            out["faithfulness"]["random_deletion_auc"],
            out["faithfulness"]["insertion_auc"],
            out["faithfulness"]["random_insertion_auc"],
            "" if f["better_than_random"] else ": NO BETTER THAN RANDOM",
        )
    if settings.sanity.enabled:
        t0 = time.time()
        rows = subset(data.labels, settings.sanity.max_samples)
        x, target = data.tensors(rows, device)
        make = lambda net: make_method(method_name, net, settings, data, device, seed)  # noqa: E731
        r = randomisation(model, make, x, target, attr[rows], seed)
        pd.DataFrame(
            [{"step": i + 1, **c} for i, c in enumerate(r["cascade"])]
            + [{"step": "all", "randomised_down_to": "all at once", "spearman": r["all_at_once"]}]
        ).to_csv(folder / "sanity.csv", index=False)
        insensitive = bool(r["all_at_once"] >= settings.sanity.threshold)
        out["sanity"] = {
            "n_samples": int(len(rows)),
            "spearman_all_at_once": r["all_at_once"],
            "cascade": r["cascade"],
            "threshold": settings.sanity.threshold,
            "insensitive_to_model": insensitive,
            "seconds": round(time.time() - t0, 2),
        }
        log.info(
            "%s: rank correlation with a randomised model %.3f%s",
            method_name,
            r["all_at_once"],
            ": INSENSITIVE TO THE MODEL" if insensitive else "",
        )
    if settings.stability.enabled:
        out["stability"] = stability(model, method_name, settings, data, classes, device, seed)
    return out


def stability(
    model, method_name: str, settings: Explain, data: ModelInputs, classes: list[str], device, seed: int
) -> dict:
    """How much a class's top genes depend on the fold model explained (each fold model explained on its own) and,
    for stochastic methods (SmoothGrad), on the random draws (the method run again with other seeds)."""
    t0 = time.time()
    rows = subset(data.labels, settings.stability.max_samples)
    x, target = data.tensors(rows, device)

    def class_scores(net, draw_seed: int) -> np.ndarray:
        torch.manual_seed(draw_seed)
        method = make_method(method_name, net, settings, data, device, seed)
        attr = method.attribute(x.clone().requires_grad_(True), target).detach().cpu().numpy()
        return class_means(data.to_genes(attr, rows), data.labels[rows], len(classes))

    out: dict = {"n_samples": int(len(rows))}
    folds = members(model)
    if len(folds) > 1:
        out["folds"] = agreement([class_scores(m, seed) for m in folds], classes, settings.top_k)
    if METHODS[method_name].stochastic:
        out["draws"] = agreement(
            [class_scores(model, seed + d) for d in range(settings.stability.draws)], classes, settings.top_k
        )
    out["seconds"] = round(time.time() - t0, 2)
    shown = {
        k: f"Spearman {v['spearman']:.3f}, top {settings.top_k} shared {v['shared_top_k']:.2f}"
        for k, v in out.items()
        if isinstance(v, dict)
    }
    log.info(
        "%s: stability across fold models: %s%s",
        method_name,
        shown.get("folds", "n/a (one model)"),
        f"; across {settings.stability.draws} draws: {shown['draws']}" if "draws" in shown else "",
    )
    return out
