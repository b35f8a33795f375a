"""Serving profiles: the hardware-dependent numbers of a Triton model configuration, as data.

A profile says where the model runs (``KIND_GPU`` / ``KIND_CPU``), which export precisions make
sense there, how many model instances to start, how large a batch the dynamic batcher may form and
how long it may wait to form one, and the onnxruntime knobs handed to each instance. Everything
else in ``config.pbtxt`` (inputs, outputs, cache, warmup) is the same for every profile and comes
from the tool registry (see :mod:`vedit.triton_repo.config`).

GPU instance counts are *sized*, not fixed: each instance holds its own copy of the ONNX weights
plus a CUDA context, activations and a Python stub process, so the count is the number of such
copies that fit in the card's memory (after a reserve), capped at the count where more copies
stop helping. A Llama-2-7b fp16 export (~13.5 GB) therefore gets one instance on a 24 GB L4, while
the small demo T5 student gets the cap.

The sizing is also *enforced*: each GPU instance gets onnxruntime's CUDA ``gpu_mem_limit`` (its
share of the usable memory minus the CUDA context that lives outside the arena) and the
``kSameAsRequested`` arena growth (the default doubles, overshooting the share), both written into
``config.pbtxt`` and passed to the CUDA execution provider by the served model. A GPU instance whose
session did not get the CUDA provider refuses to load (``allow_cpu_fallback`` false).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vedit.errors import TritonRepoError

Kind = Literal["KIND_CPU", "KIND_GPU"]
Precision = str  # one of vedit.manifest.PRECISIONS

GIB = 1024**3
#: Per GPU instance, outside onnxruntime's arena: CUDA context, cuBLAS/cuDNN workspaces.
CUDA_CONTEXT_GIB = 0.5


@dataclass(frozen=True)
class Profile:
    """One deployment target. ``reason`` is shown by ``vedit triton build --help`` and the docs."""

    name: str
    kind: Kind
    precisions: tuple[Precision, ...]
    """Export precisions accepted, preferred first (fp16 needs a GPU; int8/int4 weight-only
    quantization, MatMulNBits, is served on CPU)."""
    max_instances: int
    """Instance count on CPU; the cap on GPU, where memory may allow fewer."""
    max_batch_size: int
    max_queue_delay_us: int
    threads: int
    """onnxruntime intra-op threads per instance (0: onnxruntime's default, one per core)."""
    providers: tuple[str, ...]
    reason: str
    gpu_memory_gib: float = 0.0
    reserve_gib: float = 0.0
    """Left free on the card: other processes, the CUDA runtime's own pools, fragmentation."""
    instance_overhead_gib: float = 0.0
    """Per instance beyond the weights: CUDA context (~0.4 GB), python stub, ORT arena."""
    activation_factor: float = 1.0
    """Weights x this = weights plus activations and KV cache at ``max_batch_size`` (short
    sequences: three tool outputs of < 100 tokens each)."""
    arena_extend_strategy: str = ""
    """onnxruntime CUDA arena growth; ``kSameAsRequested`` stays within the instance's share."""
    allow_cpu_fallback: bool = False
    """Serve on CPU when the CUDA provider does not start (never silently: it is logged)."""

    def instance_count(self, weights_bytes: int) -> int:
        """How many instances to start for an export whose ONNX files weigh ``weights_bytes``."""
        if self.kind == "KIND_CPU":
            return self.max_instances
        per_instance = weights_bytes * self.activation_factor / GIB + self.instance_overhead_gib
        usable = self.gpu_memory_gib - self.reserve_gib
        fits = math.floor(usable / per_instance)
        if fits < 1:
            raise TritonRepoError(
                f"profile {self.name}: one instance needs ~{per_instance:.1f} GiB but the card has "
                f"{usable:.1f} GiB usable; export at a lower precision or use a larger GPU profile"
            )
        return min(fits, self.max_instances)

    def gpu_mem_limit(self, instances: int) -> int:
        """Bytes of onnxruntime CUDA arena per instance when ``instances`` share the card (0 on CPU).

        ``instance_count`` only allows counts for which this still holds the weights and activations.
        """
        if self.kind == "KIND_CPU":
            return 0
        share = (self.gpu_memory_gib - self.reserve_gib) / max(1, int(instances)) - CUDA_CONTEXT_GIB
        return int(share * GIB)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="l4",
            kind="KIND_GPU",
            precisions=("fp16", "fp32"),
            gpu_memory_gib=24.0,
            reserve_gib=2.0,
            instance_overhead_gib=0.6,
            activation_factor=1.25,
            max_instances=2,
            max_batch_size=16,
            max_queue_delay_us=1000,
            threads=1,
            providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
            arena_extend_strategy="kSameAsRequested",
            reason=(
                "NVIDIA L4, 24 GB: fp16 halves the weights and uses the tensor cores. Two instances "
                "let one instance's Python-side work (tokenizing, grammar masks) overlap the other's "
                "GPU kernels; a third only contends for the same SMs. Memory decides below that: a "
                "7B fp16 export gets one. Batches up to 16 requests (48 tool prompts) keep the small "
                "L4 busy without long queues; 1 ms of batching delay is small next to a request."
            ),
        ),
        Profile(
            name="a100",
            kind="KIND_GPU",
            precisions=("fp16", "fp32"),
            gpu_memory_gib=80.0,
            reserve_gib=4.0,
            instance_overhead_gib=0.6,
            activation_factor=1.25,
            max_instances=4,
            max_batch_size=32,
            max_queue_delay_us=1000,
            threads=1,
            providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
            arena_extend_strategy="kSameAsRequested",
            reason=(
                "NVIDIA A100 80 GB: fp16 on roughly 3x the L4's compute, so more instances (up to "
                "four) and larger batches (32 requests) before the GPU saturates; a 7B fp16 export "
                "still fits four times. The same 1 ms batching delay."
            ),
        ),
        Profile(
            name="cpu",
            kind="KIND_CPU",
            precisions=("fp32", "int8", "int4"),
            max_instances=2,
            max_batch_size=8,
            max_queue_delay_us=500,
            threads=1,
            providers=("CPUExecutionProvider",),
            reason=(
                "Any x86 host without a GPU: fp32, or int8/int4 weight-only quantization (smaller, "
                "gated by the offline metrics). Two single-threaded instances: one "
                "runs ONNX kernels while the other does its Python-side work, and two processes "
                "of one thread never oversubscribe a small host. Batches of up to 8 and a 0.5 ms "
                "delay: on CPU the batch mostly saves Python overhead, not compute."
            ),
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise TritonRepoError(
            f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}"
        ) from None


__all__ = ["PROFILES", "Profile", "get_profile"]
