"""Shape a student to a budget: at most a fraction of the teacher's parameters and at least a batch-32
speed-up over it on the machine that trains it.

Candidates keep a subset of the teacher's layers (first, middle, last: DistilBERT-style), prune
each layer's feed-forward block (``students.prune_intermediate``) and trim the word-embedding table
to the pieces the training texts use, most frequent first, until the parameter budget holds
(``students.trim_vocabulary_to_budget``). They are listed most capable first (more layers, then a
wider feed-forward block); the first that fits both budgets wins. Speed is measured, not
estimated: every candidate that fits the parameter budget is timed side by side with the teacher
(``measure.measure_speeds``: calls alternate between the models, each from its fastest call), and
must reach the speed-up with a margin, because the gate measures again on a noisy machine. The
speed-up a candidate is credited with is the smaller of the wall-clock and the CPU-time ratio: under
load the wall-clock ratio overstates small models (the probe once read 4.56x for a 2.30x student
with four processes on two cores), and the load average at probe time is recorded with the choice.

Pure torch; the caller caches the choice (by teacher, data and budget) and records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from components.common.modeling import ModelError
from components.distillation.measure import count_parameters, load_average, measure_speeds
from components.distillation.students import (
    build_student_from_pretrained,
    build_student_from_teacher_layers,
    prune_intermediate,
    trim_vocabulary_to_budget,
)

# The probe's speed-up must exceed the budget by this factor: the gate times the student again.
SPEED_MARGIN = 1.1


@dataclass(frozen=True)
class Shape:
    layers: tuple[int, ...]
    intermediate_size: int  # feed-forward width per layer (the teacher's = no pruning)

    def label(self) -> str:
        return f"layers {list(self.layers)}, feed-forward {self.intermediate_size}"


@dataclass
class ShapeChoice:
    shape: Shape
    parameters: int
    parameter_fraction: float
    speedup: float
    vocab_size: int
    reason: str
    candidates: list[dict] = field(default_factory=list)
    load_average: float | None = None  # 1-minute load average when the candidates were timed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = {"layers": list(self.shape.layers), "intermediate_size": self.shape.intermediate_size}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ShapeChoice:
        shape = Shape(tuple(d["shape"]["layers"]), int(d["shape"]["intermediate_size"]))
        return cls(shape, int(d["parameters"]), float(d["parameter_fraction"]), float(d["speedup"]),
                   int(d["vocab_size"]), d["reason"], list(d.get("candidates", [])), d.get("load_average"))


def candidate_shapes(num_layers: int, intermediate_size: int) -> list[Shape]:
    """Candidate shapes, most capable first: 3, 2, then 1 of the teacher's layers (first, middle,
    last), feed-forward widths full, half and a quarter (three layers also at an eighth). Depth
    before width: three layers at a quarter, then an eighth of the width come before two at half
    width. On trec (three seeds, held-out timing) they kept 0.974 / 0.969 of the teacher's accuracy
    at 3.0x / 3.4-3.5x, two layers at half width 0.961 (two seeds) at 3.6-3.7x (docs/benchmarks.md,
    "Three layers at an eighth of the width")."""
    last = num_layers - 1
    three, two, one = tuple(sorted({0, num_layers // 2, last})), tuple(sorted({0, last})), (last,)
    full, half, quarter = intermediate_size, max(1, intermediate_size // 2), max(1, intermediate_size // 4)
    eighth = max(1, intermediate_size // 8)
    order = [(three, full), (three, half), (two, full), (three, quarter), (three, eighth), (two, half),
             (two, quarter), (one, half), (one, quarter)]
    return list(dict.fromkeys(Shape(layers, width) for layers, width in order))


def build_shaped(teacher, tokenizer, shape: Shape, texts: Sequence[str], max_length: int, max_parameters: int,
                 pretrained=None, seed: int = 0, factorize: bool = False):
    """(student, tokenizer) of `shape`, its vocabulary trimmed to `texts` within `max_parameters`.

    With `pretrained` (student.init_weights=pretrained): the very same architecture (layers, the
    feed-forward neurons the teacher's weights rank highest, vocabulary) holding the pretrained
    model's weights and a fresh classification head seeded by `seed`. With `factorize`, every used piece is
    kept in factored embeddings when the full-width table would not fit (students.factorize_embeddings)."""
    pruned = shape.intermediate_size < teacher.config.intermediate_size
    if pretrained is not None:
        student = build_student_from_pretrained(teacher, pretrained, shape.layers,
                                                shape.intermediate_size if pruned else 0, seed)
        return trim_vocabulary_to_budget(student, tokenizer, texts, max_positions=max_length,
                                         max_parameters=max_parameters, factorize=factorize)
    student = build_student_from_teacher_layers(teacher, shape.layers)
    if pruned:
        student = prune_intermediate(student, shape.intermediate_size)
    return trim_vocabulary_to_budget(student, tokenizer, texts, max_positions=max_length,
                                     max_parameters=max_parameters, factorize=factorize)


def choose_shape(teacher, tokenizer, texts: Sequence[str], probe_texts: Sequence[str], max_length: int,
                 max_fraction: float, min_speedup: float, measure: Callable = measure_speeds,
                 latency_samples: int = 4, throughput_batches: int = 8, factorize: bool = False) -> ShapeChoice:
    """The most capable candidate within both budgets; ModelError (naming every candidate's figures)
    when none is. `min_speedup` 0 means no speed budget (nothing is timed)."""
    teacher_params = count_parameters(teacher)
    limit = int(max_fraction * teacher_params) if max_fraction else 0
    built, rows = {}, []
    for shape in candidate_shapes(teacher.config.num_hidden_layers, teacher.config.intermediate_size):
        try:
            student, s_tok = build_shaped(teacher, tokenizer, shape, texts, max_length, limit, factorize=factorize)
        except ModelError as exc:  # not even the special tokens fit beside the layers
            rows.append({"shape": shape.label(), "fits_parameters": False, "why": str(exc)})
            continue
        params = count_parameters(student)
        row = {"shape": shape.label(), "parameters": params, "parameter_fraction": round(params / teacher_params, 4),
               "vocab_size": student.config.vocab_size, "fits_parameters": not limit or params <= limit}
        if student.config.model_type == "albert":  # every piece kept, the embeddings factored to fit
            row["embedding_rank"] = student.config.embedding_size
        rows.append(row)
        if row["fits_parameters"]:
            built[shape] = (student, s_tok, row)
    speeds, load = {}, None
    if built and min_speedup > 0:
        timed = {"teacher": (teacher, tokenizer, max_length)}
        timed.update({s.label(): (m, t, max_length) for s, (m, t, _) in built.items()})
        load = load_average()
        speeds = measure(timed, list(probe_texts), latency_samples, throughput_batches)
    for shape, (_, _, row) in built.items():
        if speeds:
            row.update(_speedups(speeds[shape.label()], speeds["teacher"]))
        row["fits_speedup"] = not min_speedup or row.get("speedup", 0.0) >= min_speedup * SPEED_MARGIN
    for shape, (_, _, row) in built.items():
        if row["fits_speedup"]:
            reason = (f"the most capable candidate within {max_fraction:g} of the teacher's parameters "
                      f"({row['parameter_fraction']:.3f}"
                      + (f", embeddings factored at rank {row['embedding_rank']}" if "embedding_rank" in row else "")
                      + f") and a {min_speedup:g}x batch-32 speed-up with a "
                      f"{SPEED_MARGIN:g}x margin (probe: {row.get('speedup', float('nan')):.2f}x"
                      + (f", load average {load:.2f}" if load is not None else "") + ")")
            return ShapeChoice(shape, row["parameters"], row["parameter_fraction"], row.get("speedup", 0.0),
                               row["vocab_size"], reason, rows, load)
    summary = "; ".join(f"{r['shape']}: {r.get('parameter_fraction', '-')} of the parameters, "
                        f"{r.get('speedup', '-')}x" for r in rows)
    raise ModelError(f"no student shape meets the budget student.max_parameter_fraction={max_fraction:g} and "
                     f"student.min_speedup={min_speedup:g} (x{SPEED_MARGIN:g} margin) on this machine; candidates: "
                     f"{summary}. Relax a budget, or set student.shape: manual and describe the student yourself.")


def _speedups(student: dict, teacher: dict) -> dict:
    """The speed-up credited to a candidate: the smaller of the wall-clock and CPU-time ratios (the
    CPU figure is absent from measures that time something other than torch, e.g. tests)."""
    wall = student["throughput_rows_per_s"] / teacher["throughput_rows_per_s"]
    out = {"speedup_wall": round(wall, 3)}
    if "throughput_cpu_rows_per_s" in student and "throughput_cpu_rows_per_s" in teacher:
        cpu = student["throughput_cpu_rows_per_s"] / teacher["throughput_cpu_rows_per_s"]
        out["speedup_cpu"] = round(cpu, 3)
        wall = min(wall, cpu)
    out["speedup"] = round(wall, 3)
    return out
