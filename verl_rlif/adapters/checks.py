"""Validation of a composed training config: ``verl-rlif check`` and the ``rlif`` trainer's init run the same code.

Errors are settings that would silently break the method or leak labels; each message names the fix.
Warnings are weak but legal setups. Registration checks look at verl's registries in this process and report
why an adapter failed to register (``verl_rlif.register.LOAD_ERRORS``), because verl hides plugin errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from verl_rlif.answers import check_extractor_names
from verl_rlif.config import KL_COV_LOSS_MODES, RLIFConfig

ENGINE_VENDOR = "rlif"
ENGINE_VENDOR_KEY = "ray_kwargs.ray_init.runtime_env.env_vars.VERL_ENGINE_VENDOR"
REFERENCE_REWARD_KEY = "reward.custom_reward_function"
REFERENCE_REWARD_PATH = "pkg://verl_rlif.adapters.ground_truth_reward"
TRAINER_MODE_KEY = "trainer.v1.trainer_mode"
TRAINER_MODES = {"rlif": "sync", "rlif_colocate_async": "colocate_async", "rlif_separate_async": "separate_async"}
"""Our trainer modes -> the verl v1 mode each one runs (the schedule, replay buffer and checkpointing are verl's)."""
SELF_CERTAINTY_BACKENDS = ("fsdp", "fsdp2", "fsdp_turbo", "megatron")
"""``actor_rollout_ref.actor.strategy`` values whose verl engine our engines extend (docs/how-it-plugs-into-verl.md)."""


class ConfigError(ValueError):
    """One or more settings that break verl-rlif; the message lists every problem with its fix."""


def _get(config: DictConfig, key: str, default=None):
    value = OmegaConf.select(config, key, default=default)
    return default if value is None else value


def _integer(config: DictConfig, key: str, default: int) -> int:
    """An integer setting the checks compute with; a value of another type (``rollout.n=abc`` from the command line
    arrives as a string) is a :class:`ConfigError` naming the key, not a TypeError deep in a comparison."""
    value = _get(config, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"verl-rlif config is invalid:\n  - {key}={value!r} must be an integer")
    return value


def _engine_vendor_problem(config: DictConfig) -> str | None:
    vendor = _get(config, ENGINE_VENDOR_KEY) or os.environ.get("VERL_ENGINE_VENDOR")
    if vendor == ENGINE_VENDOR:
        return None
    return (
        f"VERL_ENGINE_VENDOR is {vendor!r} for the Ray workers, so verl picks its own engines and self-certainty is "
        f"never computed: set +{ENGINE_VENDOR_KEY}={ENGINE_VENDOR} (the packaged rlif_plugin.yaml does), or export "
        f"VERL_ENGINE_VENDOR={ENGINE_VENDOR} on every node before `ray start`"
    )


def _switch_problems(config: DictConfig, rlif: RLIFConfig) -> list[str]:
    expected = [
        ("trainer.use_v1", True, "the legacy v0 trainer cannot carry self-certainty or vote over groups"),
        ("algorithm.adv_estimator", "rlif_gdpo", "the rlif trainer combines its rewards with GDPO"),
        ("reward.reward_manager.name", "rlif", "the rlif reward manager provides the answer keys the vote needs"),
    ]
    problems = [
        f"{key}={_get(config, key)!r}: {why}; set {key}={str(want).lower() if want is True else want}"
        for key, want, why in expected
        if _get(config, key) != want
    ]
    mode = _get(config, TRAINER_MODE_KEY)
    if mode not in TRAINER_MODES:
        modes = " or ".join(f"{ours} (verl's {verl})" for ours, verl in TRAINER_MODES.items())
        problems.append(
            f"{TRAINER_MODE_KEY}={mode!r}: only the rlif trainers compute the vote and self-certainty rewards; "
            f"set {TRAINER_MODE_KEY}=rlif, or one of {modes}"
        )
    if _get(config, "reward.reward_manager.source", "register") != "register":
        problems.append("reward.reward_manager.source must be 'register' to select the rlif reward manager")
    if _get(config, "algorithm.filter_groups.enable", False):
        problems.append(_filter_groups_problem(_get(config, "algorithm.filter_groups.metric")))
    custom_sampler = _get(config, "trainer.v1.sampler.custom_sampler.name")
    if rlif.dynamic_sampling.enable and custom_sampler:
        problems.append(
            f"rlif.dynamic_sampling.enable=true brings its own replay buffer, but trainer.v1.sampler.custom_sampler "
            f"selects {custom_sampler!r}: unset trainer.v1.sampler.custom_sampler or rlif.dynamic_sampling.enable"
        )
    problems.extend(_group_problem(config))
    problems.extend(_voter_problems(config, rlif))
    if "self_certainty" in rlif.rewards:
        problems.extend(_self_certainty_problems(config))
    token_rewards = [name for name in rlif.rewards if name in ("self_certainty", "entropy")]
    if token_rewards and _get(config, "algorithm.rollout_correction.bypass_mode", False):
        problems.append(
            f"algorithm.rollout_correction.bypass_mode=true skips the old-log-prob forward pass that computes "
            f"{' and '.join(token_rewards)}; set algorithm.rollout_correction.bypass_mode=false"
        )
    if _get(config, TRAINER_MODE_KEY) == "rlif_separate_async":
        problems.extend(_separate_async_problems(config))
    return problems


def _separate_async_problems(config: DictConfig) -> list[str]:
    """What verl's separate_async trainer asserts only once Ray is up, said here with the fix."""
    rollout, problems = "actor_rollout_ref.rollout", []
    nodes, per_node = int(_get(config, f"{rollout}.nnodes", 0)), int(_get(config, f"{rollout}.n_gpus_per_node", 0))
    replica = _product(
        config, rollout, ("tensor_model_parallel_size", "data_parallel_size", "pipeline_model_parallel_size")
    )
    if nodes <= 0 or per_node <= 0:
        problems.append(
            f"trainer.v1.trainer_mode=rlif_separate_async generates on a standalone rollout pool, but {rollout}.nnodes="
            f"{nodes} x {rollout}.n_gpus_per_node={per_node} gives it no GPUs: set both (GPUs besides the trainer's)"
        )
    elif (nodes * per_node) % replica or (replica > per_node and replica % per_node):
        problems.append(
            f"{rollout} TP x DP x PP = {replica} GPUs per replica does not divide the standalone rollout pool "
            f"({rollout}.nnodes={nodes} x {rollout}.n_gpus_per_node={per_node} = {nodes * per_node} GPUs; a replica "
            f"larger than a node must span whole nodes): change the pool or {rollout}.tensor_model_parallel_size"
        )
    backend = _get(config, f"{rollout}.checkpoint_engine.backend", "naive")
    if backend == "naive":
        problems.append(
            f"{rollout}.checkpoint_engine.backend=naive cannot send weights to a standalone rollout pool: set it to "
            f"nccl (or nixl, mooncake) for trainer.v1.trainer_mode=rlif_separate_async"
        )
    batch, mini = (
        _get(config, "data.train_batch_size", 0),
        _get(config, "actor_rollout_ref.actor.ppo_mini_batch_size", 0),
    )
    sync_step = int(_get(config, "trainer.v1.separate_async.parameter_sync_step", 1))
    if batch != sync_step * mini:
        problems.append(
            f"separate_async trains one mini-batch per weight version: data.train_batch_size={batch} must equal "
            f"trainer.v1.separate_async.parameter_sync_step={sync_step} x actor_rollout_ref.actor.ppo_mini_batch_size"
            f"={mini}; change one of them"
        )
    return problems


def _filter_groups_problem(metric) -> str:
    """verl's DAPO filter reads a per-response number from the reward manager; ours returns none worth filtering."""
    why = {
        "acc": "filters on ground-truth accuracy, a label leak into training",
        "reward": "filters on the rlif reward manager's score, which is always 0: every group would be dropped and "
        "verl would refill for ever",
    }.get(metric, f"filters on the reward-manager value {metric!r} before the vote, which the vote never sees")
    return (
        f"algorithm.filter_groups.enable=true with metric={metric!r} {why}; set algorithm.filter_groups.enable=false "
        f"and use vote-aware dynamic sampling instead: rlif.dynamic_sampling.enable=true"
    )


def _self_certainty_problems(config: DictConfig) -> list[str]:
    problems = []
    vendor = _engine_vendor_problem(config)
    if vendor:
        problems.append(vendor)
    strategy = _get(config, "actor_rollout_ref.actor.strategy")
    if strategy not in SELF_CERTAINTY_BACKENDS:
        problems.append(
            f"actor_rollout_ref.actor.strategy={strategy!r}: verl-rlif computes self-certainty inside the engines "
            f"of {', '.join(SELF_CERTAINTY_BACKENDS)} only (subclasses of verl's FSDP and Megatron LM engines); "
            f"pick one of those, or drop self_certainty from rlif.rewards"
        )
    fused = _get(config, "actor_rollout_ref.model.use_fused_kernels", False)
    dynamic_cp = "actor_rollout_ref.actor.megatron.dynamic_context_parallel"
    if fused and strategy == "megatron" and _get(config, dynamic_cp, False):  # the engine refuses it too
        problems.append(
            "actor_rollout_ref.model.use_fused_kernels=true: self-certainty with fused kernels on the Megatron "
            f"engine does not support dynamic context parallelism; set {dynamic_cp}=false, or "
            "actor_rollout_ref.model.use_fused_kernels=false"
        )
    return problems


def _warnings(config: DictConfig) -> list[str]:
    warnings = []
    actor = "actor_rollout_ref.actor"
    loss_mode = _get(config, f"{actor}.policy_loss.loss_mode", "vanilla")
    mini_batch = _integer(config, f"{actor}.ppo_mini_batch_size", 0)
    batch = _integer(config, "data.train_batch_size", 0)
    one_update = _integer(config, f"{actor}.ppo_epochs", 1) == 1 and mini_batch >= batch
    if loss_mode in KL_COV_LOSS_MODES.values() and one_update:
        warnings.append(
            f"KL-Cov with a single on-policy update per rollout penalises only numerical noise (log pi - log pi_old "
            f"is ~0, but its gradient beta*sign*grad log pi is not and points in random directions): set "
            f"{actor}.ppo_mini_batch_size below data.train_batch_size (e.g. a quarter) or {actor}.ppo_epochs>1"
        )
    if loss_mode == "kl_cov":
        warnings.append(
            f"{actor}.policy_loss.loss_mode=kl_cov is verl's version (host syncs; k = max(1, int(rho N)) inflates the "
            f"selected fraction on small micro-batches and floors it in between); rlif_kl_cov is the same loss "
            f"without those (rlif.kl_cov.rounding=verl keeps verl's k)"
        )
    if _get(config, "algorithm.use_kl_in_reward", False):
        warnings.append("algorithm.use_kl_in_reward is ignored by the rlif trainer; use actor.use_kl_loss instead")
    return warnings


def _label_free_warnings(config: DictConfig) -> list[str]:
    path = _get(config, f"{REFERENCE_REWARD_KEY}.path")
    if not path:
        return []
    return [
        f"{REFERENCE_REWARD_KEY}.path={path} is ignored: the rlif reward manager scores every response 0.0 and "
        f"trains on its internal rewards only; for the supervised reference use preset=ground_truth_grpo"
    ]


def _group_problem(config: DictConfig) -> list[str]:
    n = _integer(config, "actor_rollout_ref.rollout.n", 1)
    if n < 2:
        return [f"actor_rollout_ref.rollout.n={n}: a vote needs a group; set actor_rollout_ref.rollout.n>=2"]
    return []


def _voter_problems(config: DictConfig, rlif: RLIFConfig) -> list[str]:
    """``actor_rollout_ref.rollout.n`` is what verl generates, hence the source of truth for the voters."""
    n = _integer(config, "actor_rollout_ref.rollout.n", 1)
    voters, trained = rlif.vote.voters_per_prompt, rlif.vote.trained_per_prompt
    # trained_per_prompt < n runs in every mode: verl's _step_once calls _balance_batch (our subset step) in each,
    # and its async replay buffers hand out whole finished groups (failed ones evicted, prompt keys cleared at sample)
    if voters is not None and voters != n:
        return [
            f"rlif.vote.voters_per_prompt={voters} but actor_rollout_ref.rollout.n={n}: verl generates rollout.n "
            f"responses per prompt and all of them vote; set actor_rollout_ref.rollout.n={voters}"
        ]
    if trained is not None and trained > n:
        return [
            f"rlif.vote.trained_per_prompt={trained} exceeds the {n} voters per prompt "
            f"(actor_rollout_ref.rollout.n); set it to at most {n}"
        ]
    return []


def _product(config: DictConfig, prefix: str, keys: tuple[str, ...]) -> int:
    size = 1
    for key in keys:
        size *= _integer(config, f"{prefix}.{key}", 1)
    return size


def _parallelism_problems(config: DictConfig) -> list[str]:
    """Layouts that cannot fit the GPUs. verl checks the actor's only without dynamic batch sizes, and the rollout's
    only once Ray has placed its replicas (a replica set that does not divide the GPUs leaves some idle or none)."""
    per_node, nodes = _integer(config, "trainer.n_gpus_per_node", 1), _integer(config, "trainer.nnodes", 1)
    gpus = per_node * nodes
    where = f"trainer.nnodes={nodes} x trainer.n_gpus_per_node={per_node} = {gpus} GPUs"
    if gpus < 1:  # also keeps the divisibility tests below from dividing by zero
        return [f"{where}: set trainer.nnodes and trainer.n_gpus_per_node to at least 1"]
    problems = []
    for role in ("actor", "ref"):
        prefix = f"actor_rollout_ref.{role}"
        if _get(config, f"{prefix}.strategy") != "megatron":
            continue
        keys = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size")
        size = _product(config, f"{prefix}.megatron", keys)
        if size < 1:
            problems.append(f"{prefix}.megatron TP x PP x CP = {size}: set each parallel size to at least 1")
        elif gpus % size:
            problems.append(
                f"{prefix}.megatron TP x PP x CP = {size} does not divide {where}: change the parallel sizes or the "
                f"node count"
            )
    if _get(config, TRAINER_MODE_KEY) == "rlif_separate_async":
        return problems  # the rollout runs on its own pool, which _separate_async_problems checks
    rollout = "actor_rollout_ref.rollout"
    keys = ("tensor_model_parallel_size", "data_parallel_size", "pipeline_model_parallel_size")
    size = _product(config, rollout, keys)
    if size < 1:
        problems.append(f"{rollout} TP x DP x PP = {size}: set each parallel size to at least 1")
    elif gpus % size or (size > per_node and size % per_node):
        problems.append(
            f"{rollout} TP x DP x PP = {size} GPUs per replica does not divide {where} (and a replica larger than a "
            f"node must span whole nodes): change {rollout}.tensor_model_parallel_size or the node count"
        )
    return problems


def _reference_problems(config: DictConfig) -> list[str]:
    """The supervised reference must train with verl's own trainer, estimator and a ground-truth reward."""
    plugin_parts = [  # key, the plugin's values, verl's own value to use instead
        (TRAINER_MODE_KEY, tuple(TRAINER_MODES), TRAINER_MODES.get(_get(config, TRAINER_MODE_KEY), "sync")),
        ("algorithm.adv_estimator", ("rlif_gdpo",), "grpo"),
        ("reward.reward_manager.name", ("rlif",), "naive"),
    ]
    problems = [
        f"{key}={_get(config, key)!r} contradicts rlif.ground_truth_reference=true (the plugin's part never trains on "
        f"labels); set {key}={verl} (preset=ground_truth_grpo sets all of these), or rlif.ground_truth_reference=false "
        f"for a label-free run"
        for key, mine, verl in plugin_parts
        if _get(config, key) in mine
    ]
    return problems + _group_problem(config)


def _reference_warnings(config: DictConfig) -> list[str]:
    path = _get(config, f"{REFERENCE_REWARD_KEY}.path")
    notice = (
        "rlif.ground_truth_reference=true: this is the SUPERVISED reference. verl-rlif's trainer is off and "
        f"ground-truth labels ARE used for training (reward: {path or 'verl default_compute_score'})"
    )
    warnings = [notice]
    if not path:
        warnings.append(
            "verl's default_compute_score dispatches on data_source names verl knows; for data from "
            f"`verl-rlif prepare-data` set {REFERENCE_REWARD_KEY}.path={REFERENCE_REWARD_PATH} (the preset does)"
        )
    return warnings + _warnings(config)


def validate(config: DictConfig) -> list[str]:
    """Raise :class:`ConfigError` listing every problem; return the warnings.

    With ``rlif.ground_truth_reference=true`` the config is the supervised reference instead: it must NOT use the
    plugin's trainer, estimator or reward manager, and the first warning says that labels are used for training.
    """
    try:
        rlif = RLIFConfig.from_training_config(config)
        check_extractor_names(rlif.extractor.names())
    except ValueError as exc:
        raise ConfigError(f"verl-rlif config is invalid:\n  - {exc}") from None
    reference = rlif.ground_truth_reference
    problems = _reference_problems(config) if reference else _switch_problems(config, rlif)
    problems += _parallelism_problems(config)
    if problems:
        raise ConfigError("verl-rlif config is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    return _reference_warnings(config) if reference else _label_free_warnings(config) + _warnings(config)


def _registered(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except Exception:
        return False
    return True


def _why_missing(module: str) -> str:
    from verl_rlif import register

    if module in register.LOAD_ERRORS:
        return f"{module} failed to import: {register.LOAD_ERRORS[module]}"
    if module in register.LOADED:
        return f"{module} was imported but its entry is gone from verl's registry"
    return f"{module} was never imported: is verl-rlif installed in this environment?"


def _custom_reward_problem(config: DictConfig) -> str | None:
    path, name = _get(config, f"{REFERENCE_REWARD_KEY}.path"), _get(config, f"{REFERENCE_REWARD_KEY}.name")
    if not path:
        return None
    from verl.utils.import_utils import load_extern_object

    try:
        load_extern_object(path, name)
    except Exception as exc:
        return f"{REFERENCE_REWARD_KEY} {path}:{name} cannot be loaded ({type(exc).__name__}: {exc})"
    return None


def verify_registered(config: DictConfig) -> None:
    """Raise naming every component this process should have registered but has not, and why."""
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn
    from verl.trainer.ppo.v1 import get_trainer_cls

    needed = []
    if not RLIFConfig.from_training_config(config).ground_truth_reference:
        needed += [
            ("trainer mode", get_trainer_cls, _get(config, TRAINER_MODE_KEY), "verl_rlif.adapters.trainer"),
            ("advantage estimator", get_adv_estimator_fn, "rlif_gdpo", "verl_rlif.adapters.advantage"),
            ("reward manager", get_reward_manager_cls, "rlif", "verl_rlif.adapters.reward_manager"),
        ]
    loss_mode = _get(config, "actor_rollout_ref.actor.policy_loss.loss_mode")
    if loss_mode in KL_COV_LOSS_MODES.values():
        needed.append(("policy loss", get_policy_loss_fn, loss_mode, "verl_rlif.adapters.policy_loss"))
    missing = [
        f"{kind} {name!r} ({_why_missing(module)})"
        for kind, lookup, name, module in needed
        if not _registered(lookup, name)
    ]
    reward_fn = _custom_reward_problem(config)
    if reward_fn:
        missing.append(reward_fn)
    if missing:
        raise ConfigError(
            "verl-rlif components are not registered in this process:\n"
            + "\n".join(f"  - {m}" for m in missing)
            + "\nverl loads plugins through the 'verl.plugins' entry point (check VERL_USE_EXTERNAL_PLUGINS is not "
            "'none'); the fallback is VERL_USE_EXTERNAL_MODULES=verl_rlif.register"
        )


def verl_validate(config: DictConfig) -> None:
    """Run verl's own config validation, the first thing ``main_ppo`` does before Ray starts; raise
    :class:`ConfigError` with its message (batch sizes that do not divide, missing micro-batch sizes, ...)."""
    import contextlib
    import io

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    if OmegaConf.is_missing(config.actor_rollout_ref.rollout, "name"):
        raise ConfigError(
            "verl's config is incomplete:\n  - actor_rollout_ref.rollout.name is not set (verl has no default): "
            "set actor_rollout_ref.rollout.name=vllm (or sglang)"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # verl prints a success line and notices
            validate_config(config, need_reference_policy(config), need_critic(config))
    except Exception as exc:
        cause = exc.__cause__ or exc  # Hydra wraps the dataclass's own assertion
        raise ConfigError(f"verl's own validation (main_ppo runs it before starting Ray) fails:\n  - {cause}") from None


def data_file_warnings(config: DictConfig) -> list[str]:
    """Data files that do not exist here (``verl-rlif check`` runs where the job starts: paths must resolve there)."""
    warnings = []
    for key in ("data.train_files", "data.val_files"):
        try:
            value = OmegaConf.select(config, key)
        except Exception as exc:  # an interpolation that cannot resolve, e.g. an unset environment variable
            warnings.append(f"{key} cannot be resolved: {exc}")
            continue
        files = [value] if isinstance(value, str) else list(value or [])
        missing = [f for f in files if not os.path.exists(os.path.expanduser(f))]
        if missing:
            raw = str(OmegaConf.to_container(config.data, resolve=False).get(key.split(".")[1]))
            where = "point RLIF_DATA_DIR at them" if "RLIF_DATA_DIR" in raw else f"set {key}"
            warnings.append(
                f"{key}: {missing} not found from {os.getcwd()}; write them with `verl-rlif prepare-data` "
                f"(see `verl-rlif prepare-data --help`) or {where}"
            )
        elif key == "data.train_files":
            warnings += _too_few_rows(config, files)
    return warnings


def _too_few_rows(config: DictConfig, files: list[str]) -> list[str]:
    """verl's training loader drops the last partial batch: fewer rows than one batch means no step at all."""
    import pyarrow.parquet as pq

    try:
        rows = sum(pq.ParquetFile(os.path.expanduser(f)).metadata.num_rows for f in files)
    except Exception:  # not parquet (verl reads other formats too) or unreadable: verl will say so itself
        return []
    batch_key = "data.gen_batch_size" if _get(config, "data.gen_batch_size") else "data.train_batch_size"
    batch = _integer(config, batch_key, 0)
    if rows >= batch:
        return []
    return [
        f"data.train_files hold {rows} rows, fewer than {batch_key}={batch}: verl drops the partial batch, so no "
        f"training step would run; lower {batch_key} or add data"
    ]


def describe(config: DictConfig) -> str:
    """One line saying how the config turns rewards into advantages and which KL-Cov it runs (``verl-rlif check``)."""
    rlif = RLIFConfig.from_training_config(config)
    if rlif.ground_truth_reference:
        advantage = f"verl's {_get(config, 'algorithm.adv_estimator')} on ground-truth rewards"
    elif len(rlif.rewards) == 1 and rlif.gdpo.whiten == "none":
        advantage = f"{rlif.rewards[0]}: group z-score without batch whitening (GRPO normalisation)"
    else:
        whitening = "no batch whitening" if rlif.gdpo.whiten == "none" else f"batch whitening per {rlif.gdpo.whiten}"
        weighted = ", ".join(f"{w:g} x {name}" for name, w in zip(rlif.rewards, rlif.gdpo.weights, strict=True))
        advantage = f"GDPO ({weighted}): group z-scores, weighted sum, {whitening}"
    loss_mode = _get(config, "actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
    if loss_mode in KL_COV_LOSS_MODES.values():
        loss = (
            f"KL-Cov rho={rlif.kl_cov.top_token_fraction:g} beta={rlif.kl_cov.beta:g} k rounding={rlif.kl_cov.rounding}"
        )
    else:
        loss = f"policy loss {loss_mode}"
    voters = _get(config, "actor_rollout_ref.rollout.n", 1)
    trained = rlif.vote.trained_per_prompt or voters
    group = f"{voters} responses per prompt" + (f", {trained} trained" if trained < voters else "")
    return f"advantage: {advantage}; {loss}; {group}"
