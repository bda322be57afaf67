"""The one home of verl-rlif's hyperparameters: defaults, units and validation.

Pure Python (no verl, no torch), so the core, the adapters and ``verl-rlif check`` all read the same
values. Every field's unit is in its name or its docstring; every bad value raises ``ValueError`` naming
the valid choices, at construction time, before any worker or GPU starts.

Defaults follow the anchors in ``docs/algorithms.md`` (TTRL/EMPO voting, Intuitor self-certainty,
GDPO, and the KL-Cov 7B recipe).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REWARD_COMPONENTS = ("vote", "self_certainty", "entropy")
"""Every reward component: ``vote`` (answer level), ``self_certainty`` (Intuitor), ``entropy`` (RENT: minus the mean
token entropy, a baseline). The method itself is :data:`DEFAULT_REWARDS`."""
DEFAULT_REWARDS = ("vote", "self_certainty")
VOTE_MODES = ("majority", "share")
TIE_POLICIES = ("all", "none", "first")
WHITEN_LEVELS = ("response", "token", "none")
KL_COV_LOSS_MODES = {"stochastic": "rlif_kl_cov", "verl": "rlif_kl_cov_verl_rounding"}
"""``rlif.kl_cov.rounding`` -> the registered policy loss (``actor.policy_loss.loss_mode``) that implements it."""
KL_COV_ROUNDINGS = tuple(KL_COV_LOSS_MODES)
LOSS_MODE_RESOLVER = "rlif_kl_cov_loss_mode"
"""OmegaConf resolver ``${rlif_kl_cov_loss_mode:${rlif.kl_cov.rounding}}`` (verl_rlif/configs/rlif_plugin.yaml)."""
SANDBOX_BACKENDS = ("local", "sandbox_fusion")
SANDBOX_LAYERS = ("session", "rlimits", "env_allowlist", "private_dir", "uid_drop", "seccomp", "landlock", "namespaces")
SANDBOX_LAYERS += ("capabilities", "write_limit")


def kl_cov_loss_mode(rounding: str) -> str:
    """The policy loss name for ``rlif.kl_cov.rounding`` (the ``rlif_kl_cov_loss_mode`` config resolver)."""
    _require_choice("rlif.kl_cov.rounding", rounding, KL_COV_ROUNDINGS)
    return KL_COV_LOSS_MODES[rounding]


def register_config_resolver() -> None:
    """Register :data:`LOSS_MODE_RESOLVER` with OmegaConf (idempotent); done in every process importing verl."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(LOSS_MODE_RESOLVER):
        OmegaConf.register_new_resolver(LOSS_MODE_RESOLVER, kl_cov_loss_mode)


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def _require_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    bad_low = value <= low if low_open else value < low
    if not math.isfinite(value) or bad_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is out of range; it must lie in {bracket}{low}, {high}]")


@dataclass(frozen=True)
class VoteConfig:
    """Answer-level reward by cluster voting within each prompt group."""

    mode: str = "majority"
    """``majority``: 1 for members of the largest cluster, else 0 (TTRL). ``share``: own cluster size / group
    size (EMPO's semantic-entropy reward)."""
    tie_policy: str = "all"
    """``majority`` mode when several clusters share the top size. ``all``: every tied cluster wins (EMPO; keeps
    rewards invariant to response order). ``none``: no cluster wins, the group gets 0 (no consensus).
    ``first``: the tied cluster whose first member comes first in the batch wins (TTRL's ``Counter`` order)."""
    min_majority_ratio: float = 0.0
    """Fraction of the group (0..1). A group whose largest cluster holds fewer responses than this fraction gets
    reward 0 for every response (EMPO uses 0.25-0.3). 0 disables the gate."""
    voters_per_prompt: int | None = None
    """Responses per prompt that vote: ``null`` means ``actor_rollout_ref.rollout.n``, which verl generates and
    which must equal it when set (``verl-rlif check`` says so)."""
    trained_per_prompt: int | None = None
    """Responses per prompt trained on, drawn at random within each group after the vote over all voters (TTRL:
    64 voted, 32 trained). ``null`` trains on every voter. No old-log-prob, reference or update pass runs on the
    others."""

    def __post_init__(self) -> None:
        for name in ("voters_per_prompt", "trained_per_prompt"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 2):
                raise ValueError(f"rlif.vote.{name}={value!r} must be an int >= 2 (a group of one has no signal)")
        voters, trained = self.voters_per_prompt, self.trained_per_prompt
        if voters is not None and trained is not None and trained > voters:
            raise ValueError(
                f"rlif.vote.trained_per_prompt={trained} exceeds rlif.vote.voters_per_prompt={voters}: the trained "
                f"responses are a subset of the voters"
            )
        _require_choice("rlif.vote.mode", self.mode, VOTE_MODES)
        _require_choice("rlif.vote.tie_policy", self.tie_policy, TIE_POLICIES)
        _require_range("rlif.vote.min_majority_ratio", self.min_majority_ratio, 0.0, 1.0)


@dataclass(frozen=True)
class DynamicSamplingConfig:
    """Vote-aware dynamic sampling: drop prompt groups the vote cannot teach, refill from further prompts."""

    enable: bool = False
    """Drop every finished group whose vote reward is the same for all its members (all in one cluster, no answers
    at all, or a tie that every member wins) before the step trains, and generate further prompts in its place."""
    max_refills_per_step: int = 4
    """Refill rounds per training step (rounds, not prompts: each round generates as many prompts as groups are
    still missing). A step that reaches the cap trains on the groups it has (``rlif/dynamic_sampling/capped``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise ValueError(f"rlif.dynamic_sampling.enable={self.enable!r} must be true or false")
        if not isinstance(self.max_refills_per_step, int) or self.max_refills_per_step < 0:
            raise ValueError(
                f"rlif.dynamic_sampling.max_refills_per_step={self.max_refills_per_step!r} must be an int >= 0"
            )


@dataclass(frozen=True)
class SelfCertaintyConfig:
    """Completion-level reward by token-wise self-certainty (Intuitor)."""

    chunk_size_tokens: int = 1024
    """Tokens per chunk of the fp32 pass over the vocabulary; the extra peak memory is
    ``chunk_size_tokens * vocab_size * 4`` bytes (1024 x 152k = 0.6 GB)."""

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size_tokens, int) or self.chunk_size_tokens < 1:
            raise ValueError(f"rlif.self_certainty.chunk_size_tokens={self.chunk_size_tokens!r} must be a positive int")


@dataclass(frozen=True)
class GDPOConfig:
    """Group reward-decoupled normalisation (GDPO, arXiv 2601.05242)."""

    weights: tuple[float, ...] = (1.0, 1.0)
    """One weight per entry of ``rlif.rewards``, in the same order."""
    eps: float = 1e-6
    """Added to the within-group std before dividing (verl's GRPO epsilon)."""
    zero_variance_rtol: float = 1e-4
    """A group's component counts as constant (z = 0, no signal) when its spread max - min is at most this
    fraction of the component's standard deviation over the batch. Absorbs GPU kernel nondeterminism between
    identical responses (TRL's GDPO and open-r1's Intuitor add an absolute 1e-4 instead); 0 is exact equality."""
    whiten: str = "response"
    """Batch whitening statistics: ``response`` (each response counts once; default), ``token`` (each response
    counts once per valid token, which is verl's ``masked_whiten`` and weights long responses more) or ``none``
    (no batch whitening: one component of weight 1 is then exactly GRPO; the single-reward presets)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.weights or not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"rlif.gdpo.weights={list(self.weights)!r} must be a non-empty list of finite numbers")
        _require_range("rlif.gdpo.eps", self.eps, 0.0, 1.0, low_open=True)
        _require_range("rlif.gdpo.zero_variance_rtol", self.zero_variance_rtol, 0.0, 1.0)
        _require_choice("rlif.gdpo.whiten", self.whiten, WHITEN_LEVELS)


@dataclass(frozen=True)
class KLCovConfig:
    """KL-Cov policy loss (Cui et al., arXiv 2505.22617)."""

    top_token_fraction: float = 0.002
    """rho: the FRACTION (not percent) of valid tokens per micro-batch that get the |log-ratio| penalty, chosen by
    largest cov(A, log pi). Recipe values: 2e-3 for 7B, 2e-4 for 32B. verl calls this ``kl_cov_ratio``."""
    beta: float = 1.0
    """Coefficient of |log pi - log pi_old| on the selected tokens (verl's ``ppo_kl_coef``; the paper uses 1)."""
    rounding: str = "stochastic"
    """How k = rho * N becomes a whole number of tokens per micro-batch. ``stochastic``: floor plus a Bernoulli
    draw derived from the micro-batch's data, so E[k] = rho * N exactly and every rank holding the micro-batch
    selects alike. ``verl``: verl's and the paper code's max(1, int(rho * N)) (more than rho on small
    micro-batches, less by flooring in between)."""

    def __post_init__(self) -> None:
        _require_choice("rlif.kl_cov.rounding", self.rounding, KL_COV_ROUNDINGS)
        _require_range("rlif.kl_cov.top_token_fraction", self.top_token_fraction, 0.0, 1.0, low_open=True)
        _require_range("rlif.kl_cov.beta", self.beta, 0.0, math.inf)


@dataclass(frozen=True)
class ExtractorConfig:
    """How response text becomes an answer key (``verl_rlif.answers``)."""

    default: str = "math"
    """Extractor for data sources not listed in ``by_data_source`` (``math``, ``number``, ``choice``, ``boxed``,
    ``code``)."""
    by_data_source: Mapping[str, str] = field(default_factory=dict)
    """``data_source`` -> extractor name, e.g. ``{openai/gsm8k: number}``."""
    last_number_fallback: bool = False
    """When a response has no boxed answer or answer statement, take its last number (off: no answer)."""
    symbolic: bool = True
    """``math``: canonicalise answers the cheap path cannot settle with math-verify/sympy (in a child process)."""
    symbolic_deadline_s: float = 2.0
    """Seconds one symbolic parse or equivalence check may take before its process is killed (the answer then
    keeps its normalised string)."""
    merge_equivalent_in_group: bool = False
    """At vote time, merge distinct keys of one group that math-verify finds equivalent (pairwise, cached,
    each check bounded by ``symbolic_deadline_s``). Catches what canonical keys miss, at a cost per step."""
    merge_budget_s: float = 30.0
    """Wall-clock seconds the merge may spend per training step; pairs not compared by then stay apart (logged)."""

    def __post_init__(self) -> None:
        # Extractor names are checked where extractors are built (verl_rlif.answers.check_extractor_names: the reward
        # manager's init, `verl-rlif check`), not here: the registry imports the sandbox, which imports this module,
        # and plugins may register extractors of their own after this config exists.
        object.__setattr__(self, "by_data_source", dict(self.by_data_source))
        _require_range("rlif.extractor.symbolic_deadline_s", self.symbolic_deadline_s, 0.0, 3600.0, low_open=True)
        _require_range("rlif.extractor.merge_budget_s", self.merge_budget_s, 0.0, 86400.0, low_open=True)

    def names(self) -> tuple[str, ...]:
        """Every extractor this config selects: the default and the per-data-source ones."""
        return (self.default, *self.by_data_source.values())

    def for_data_source(self, data_source: str) -> str:
        return self.by_data_source.get(data_source, self.default)


@dataclass(frozen=True)
class SandboxConfig:
    """How the ``code`` extractor executes programs (``verl_rlif.sandbox``, docs/sandbox.md)."""

    backend: str = "local"
    """``local``: a pool of isolated worker processes on this node. ``sandbox_fusion``: a SandboxFusion server."""
    workers: int = 4
    """Local worker processes per reward-worker process, each running one program at a time."""
    timeout_per_input_s: float = 3.0
    """Wall-clock seconds one program may run on one input; after a timeout its remaining inputs are skipped."""
    memory_limit_mb: int = 1024
    """Address space a program may add (MiB, on top of the worker's own size)."""
    output_limit_bytes: int = 1048576
    """Stdout (or return value) bytes per input; more is the failure ``OUTPUT_LIMIT``."""
    file_size_limit_mb: int = 16
    """Largest file a program may write (MiB); with namespaces also the size of its private tmpfs."""
    open_files_limit: int = 64
    """Open file descriptors per program."""
    max_inputs: int = 16
    """Inputs per program: the first ones of ``extra_info["inputs"]``."""
    float_significant_digits: int = 6
    """Decimal numbers in outputs and return values are compared at this many significant digits (0: exact)."""
    required_layers: tuple[str, ...] = ("seccomp", "landlock")
    """Isolation layers that must be active, else the sandbox refuses to start (fail closed). Any of
    ``session``, ``rlimits``, ``env_allowlist``, ``private_dir``, ``uid_drop``, ``seccomp``, ``landlock``,
    ``namespaces``, ``capabilities``, ``write_limit``."""
    allow_insecure: bool = False
    """Trusted debugging only: run model code even when required layers are missing (logged as a warning)."""
    use_namespaces: bool = True
    """Start the local workers inside bubblewrap namespaces where ``bwrap`` exists and namespaces are permitted."""
    sandbox_uid: int = 65534
    """When running as root: the uid (and gid) programs run as, where the interpreter stays readable by it."""
    sandbox_fusion_url: str = ""
    """``sandbox_fusion`` backend: the ``run_code`` endpoint, e.g. ``http://host:8080/run_code`` (as verl's
    ``sandbox_fusion.url``)."""
    sandbox_fusion_concurrency: int = 16
    """``sandbox_fusion`` backend: requests in flight per reward-worker process."""

    def __post_init__(self) -> None:
        if isinstance(self.required_layers, str):
            raise ValueError(f"rlif.sandbox.required_layers={self.required_layers!r} must be a list of layer names")
        object.__setattr__(self, "required_layers", tuple(self.required_layers))
        _require_choice("rlif.sandbox.backend", self.backend, SANDBOX_BACKENDS)
        for name in self.required_layers:
            _require_choice("rlif.sandbox.required_layers entry", name, SANDBOX_LAYERS)
        positive = ("workers", "memory_limit_mb", "output_limit_bytes", "file_size_limit_mb", "open_files_limit")
        for name in (*positive, "max_inputs", "sandbox_fusion_concurrency", "sandbox_uid"):
            _require_positive_int(f"rlif.sandbox.{name}", getattr(self, name))
        if self.open_files_limit < 8:
            raise ValueError(f"rlif.sandbox.open_files_limit={self.open_files_limit} must be at least 8")
        _require_range("rlif.sandbox.timeout_per_input_s", self.timeout_per_input_s, 0.0, 3600.0, low_open=True)
        if not isinstance(self.float_significant_digits, int) or not 0 <= self.float_significant_digits <= 17:
            raise ValueError(
                f"rlif.sandbox.float_significant_digits={self.float_significant_digits!r} must be an int in [0, 17]"
            )
        if self.backend == "sandbox_fusion" and not self.sandbox_fusion_url.startswith(("http://", "https://")):
            raise ValueError(
                f"rlif.sandbox.sandbox_fusion_url={self.sandbox_fusion_url!r}: the sandbox_fusion backend needs the "
                f"run_code endpoint, e.g. http://host:8080/run_code"
            )


def _require_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")


@dataclass(frozen=True)
class RLIFConfig:
    """Everything under the ``rlif:`` key of the training config."""

    rewards: tuple[str, ...] = DEFAULT_REWARDS
    """Reward components combined by GDPO, in order; distinct names from :data:`REWARD_COMPONENTS`. The method is
    ``[vote, self_certainty]``; single components are the baselines (``verl_rlif/configs/preset/``)."""
    ground_truth_reference: bool = False
    """True only in the supervised reference (ground-truth GRPO, ``preset/ground_truth_grpo.yaml``): the
    config trains with verl's own trainer on ground-truth labels and the plugin's trainer is off. ``verl-rlif
    check`` then validates that composition (and says that labels train) instead of rejecting it; the ``rlif``
    trainer refuses to start with it."""
    vote: VoteConfig = field(default_factory=VoteConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    self_certainty: SelfCertaintyConfig = field(default_factory=SelfCertaintyConfig)
    gdpo: GDPOConfig = field(default_factory=GDPOConfig)
    kl_cov: KLCovConfig = field(default_factory=KLCovConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.ground_truth_reference, bool):
            raise ValueError(f"rlif.ground_truth_reference={self.ground_truth_reference!r} must be true or false")
        object.__setattr__(self, "rewards", tuple(self.rewards))
        unknown = [r for r in self.rewards if r not in REWARD_COMPONENTS]
        if unknown or not self.rewards or len(set(self.rewards)) != len(self.rewards):
            raise ValueError(
                f"rlif.rewards={list(self.rewards)} must list distinct components from {list(REWARD_COMPONENTS)}"
            )
        if len(self.gdpo.weights) != len(self.rewards):
            raise ValueError(
                f"rlif.gdpo.weights has {len(self.gdpo.weights)} entries for rlif.rewards={list(self.rewards)}; "
                f"give one weight per reward component"
            )

    @classmethod
    def from_training_config(cls, config: Mapping[str, Any] | None) -> RLIFConfig:
        """From a whole training config (a Hydra ``DictConfig`` or a mapping): its ``rlif`` key, or defaults."""
        section = None if config is None else config.get("rlif")
        if hasattr(section, "_metadata"):  # an OmegaConf node: resolve interpolations into plain containers
            from omegaconf import OmegaConf

            section = OmegaConf.to_container(section, resolve=True)
        return cls.from_mapping(section)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RLIFConfig:
        """Build from the plain ``rlif:`` mapping (e.g. ``OmegaConf.to_container``); unknown keys raise."""
        return _from_mapping(cls, mapping or {}, "rlif")


def config_keys(cls: type = RLIFConfig, prefix: str = "rlif") -> list[str]:
    """Every leaf key of a config dataclass, dotted (``rlif.vote.mode``, ...), in declaration order."""
    keys = []
    for f in dataclasses.fields(cls):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            keys += config_keys(sub, f"{prefix}.{f.name}")
        else:
            keys.append(f"{prefix}.{f.name}")
    return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, tuple[Any, str]] = {
    # a field's annotation (a string, under `from __future__ import annotations`) -> (accepts, what to write)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[float, ...]": (lambda v: isinstance(v, list | tuple) and all(map(_is_number, v)), "a list of numbers"),
    "tuple[str, ...]": (
        lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
        "a list of names",
    ),
    "Mapping[str, str]": (
        lambda v: isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()),
        "a mapping of names",
    ),
}


def _type_problem(key: str, value: Any, annotation: str) -> str | None:
    """``key=value must be <type>`` when a config value (e.g. ``rlif.gdpo.weights=[a,b]`` from the command line,
    which Hydra reads as strings) has the wrong type; the dataclass checks then only see well-typed values."""
    accepts, wording = _TYPES.get(annotation, (None, ""))
    if accepts is None or accepts(value):
        return None
    return f"{key}={value!r} must be {wording}"


def _from_mapping(cls, mapping: Mapping[str, Any], prefix: str):
    if not isinstance(mapping, Mapping):  # `rlif=3` or `rlif.vote=majority` on the command line
        raise ValueError(f"{prefix}={mapping!r} must be a section of keys (e.g. {prefix}.<key>=...), not a value")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {[f'{prefix}.{k}' for k in unknown]}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in mapping.items():
        sub = fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub) and not dataclasses.is_dataclass(value):
            value = _from_mapping(sub, value, f"{prefix}.{name}")
        else:
            problem = _type_problem(f"{prefix}.{name}", value, fields[name].type)
            if problem:
                raise ValueError(problem)
        kwargs[name] = value
    return cls(**kwargs)
