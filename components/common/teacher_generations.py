"""A causal-LM teacher's generations through the content-addressed teacher store: read what the store
holds, generate only the prompts it lacks (batched, ``LoadedTeacher.generate``), write those back.

Every step that asks the generative teacher something goes through :class:`GenerationFiller`, so
they share one set of rows: cache_teacher_outputs (every prompt of the snapshot, the transfer set)
and monitor_drift (the teacher's answers to its samples of reference and production prompts). A
prompt keys the same row in both (``generation_key``: teacher version, tokenizer and chat template,
rendered prompt, decoding, k), so a prompt the monitor had answered costs the redistillation's cache
step nothing, and the champion's training prompts cost the monitor nothing.

Writes go through ``TeacherOutputStore.put_generations``: each flush is one new shard, written under
a temp name and renamed, then listed in the manifest, so a reader never sees half an entry and a
writer stopped mid-way loses at most the rows it had not flushed.
"""

from __future__ import annotations

import logging

from components.common.generation import Decoding
from components.common.modeling import ModelError
from components.common.teacher_store import TeacherOutputStore, plan_rows
from components.common.teachers import LoadedTeacher

log = logging.getLogger(__name__)


def decoding_of(g) -> Decoding:
    """The teacher's decoding parameters from a GenerationConfig (config.generation)."""
    return Decoding(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, seed=g.seed)


class GenerationFiller:
    """A causal-LM teacher's generations for lists of prompts: from the store where present, generated
    where not. Fresh rows are written every `flush_rows` prompts, so a worker stopped mid-way loses at
    most the rows it had not written; the rerun generates only those.

    Counters over every ``outputs`` call: ``computed`` (distinct prompts sent to the teacher),
    ``from_store`` (distinct prompts read from the store), ``tokens_generated``, ``keys`` (every key
    looked up) and ``problems`` (integrity problems the store reported and recovered from)."""

    def __init__(self, store: TeacherOutputStore, teacher: LoadedTeacher, version: str, decoding, k: int,
                 batch_size: int = 8, flush_rows: int = 64):
        if "generation" not in teacher.produces:
            raise ModelError(f"task generation needs a causal-LM teacher; {version} is a {teacher.kind}")
        self.store, self.teacher, self.version, self.decoding, self.k = store, teacher, version, decoding, k
        self.batch_size, self.flush_rows = batch_size, max(flush_rows, 1)
        self.keys: list[bytes] = []
        self.problems: list[str] = []
        self.computed = 0
        self.from_store = 0
        self.tokens_generated = 0

    def outputs(self, prompts: list[str], progress=None) -> tuple[list[bytes], list]:
        """(keys, Generations) for `prompts`, in order."""
        rendered, keys = self.teacher.generation_keys(prompts, self.version, self.decoding, self.k)
        cached = self.store.get_generations(keys)
        self.problems += [str(p) for p in self.store.last_problems]
        self.keys += keys
        todo = plan_rows(rendered, keys, cached)
        self.from_store += len(set(keys)) - len(todo)
        log.info("teacher %s: %d prompts, %d to generate", self.version, len(prompts), len(todo))
        for start in range(0, len(todo), self.flush_rows):
            chunk = todo[start:start + self.flush_rows]
            fresh = self.teacher.generate([rendered[i] for i in chunk], [keys[i] for i in chunk], self.decoding,
                                          self.k, self.batch_size)
            self.store.put_generations([keys[i] for i in chunk], fresh)
            cached.update({keys[i]: g for i, g in zip(chunk, fresh, strict=True)})
            self.computed += len(chunk)
            self.tokens_generated += sum(len(g.tokens) for g in fresh)
            if progress is not None:
                progress(self.computed, self.tokens_generated)
        return keys, [cached[k] for k in keys]


def generation_texts(tokenizer, generations) -> list[str]:
    """The generations' tokens as text (special tokens, EOS included, dropped): the teacher's answers."""
    return [tokenizer.decode([int(t) for t in g.tokens], skip_special_tokens=True) for g in generations]
