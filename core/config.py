"""Typed configuration behind the YAML files.

Every section is a pydantic model that forbids unknown keys, so a typo is an error naming the
field instead of a silently ignored setting. Types are strict (`max_steps: true`, `2.0` or `"3"`
is an error, not 1, 2 or 3) and floats finite. `load_config` reads YAML, applies `--set a.b=v`
overrides and validates once. What needs more than the config itself (registries, data files,
the model directory, the run directory) is checked by `cluster.validate` before Ray starts.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.arith_task import ArithTaskConfig
from core.datasets import SYNTHETIC, SYNTHETIC_TASKS, FieldMap, SyntheticTaskConfig, synthetic_task
from core.prompts import BOXED_INSTRUCTION, PROMPT_TEMPLATE, check_template
from core.tiny_model import TinyModelConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class ModelConfig(Section):
    path: str | None = None  # a Hugging Face model directory; None builds the tiny local model
    tiny: TinyModelConfig = TinyModelConfig()
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    max_model_len: int = Field(1024, gt=0)
    cache_dir: str | None = None  # built/warm-started models; None: <trainer.output_dir>/_models


class PromptConfig(Section):
    """How a problem becomes the policy's prompt (core.prompts.PromptFormat)."""
    style: Literal["auto", "chat", "plain"] = "auto"  # auto: chat if the tokenizer has a chat template
    template: str = PROMPT_TEMPLATE  # plain: the whole prompt, with {problem}
    instruction: str | None = BOXED_INSTRUCTION  # chat: follows the problem in the user message
    system: str | None = None  # chat: a system message

    _template_has_problem = field_validator("template")(check_template)


class AnswerOnlyStageConfig(Section):
    """A second, short supervised stage in which `rate` of the solutions state only the answer.

    The policy then often answers at once, which is rarely right on a chain of operations,
    while it can still work a problem out when it samples the steps: RL has to find out that
    working pays. 0 steps: no such stage. A synthetic task may give its own habit instead
    (`core.datasets.SyntheticTask.habit_rows`: the shortcut task merges `rate` of the lines)."""
    steps: int = Field(0, ge=0)
    rate: float = Field(0.6, ge=0.0, le=1.0)
    lr: float = Field(1e-3, gt=0)


class WarmStartConfig(Section):
    enabled: bool = True
    steps: int = Field(300, ge=0)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, gt=0)
    # The first stage trains on the task's habit rows at this rate (a task with a habit, on its
    # generated data) instead of its worked solutions: the policy learns the habit together with
    # the skill. A habit taught in a second stage of its own broke the skill (BENCHMARKS.md §9).
    habit_rate: float | None = Field(None, ge=0, le=1)
    answer_only: AnswerOnlyStageConfig = AnswerOnlyStageConfig()


class DataConfig(Section):
    train: str = "synthetic"  # "synthetic" or a jsonl/parquet path
    eval: str = "synthetic"
    fields: FieldMap = FieldMap()  # which columns hold problem / answer / solution
    eval_size: int = Field(200, gt=0)
    synthetic: SyntheticTaskConfig = ArithTaskConfig()  # `task: shortcut` for core/shortcut_task.py


class RolloutConfig(Section):
    num_actors: int = Field(2, ge=1)
    samples_per_prompt: int = Field(8, ge=1)
    max_new_tokens: int = Field(160, gt=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    num_gpus_per_actor: float = Field(0, ge=0)
    num_cpus_per_actor: float = Field(0, ge=0)
    kv_cache_gb: float = Field(1.0, gt=0)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)


class JudgeConfig(Section):
    num_actors: int = Field(2, ge=1)
    backend: str = "tool"
    splitter: str = "auto"
    grader_workers: int = Field(1, ge=1)
    grader_timeout_s: float = Field(5.0, gt=0)
    require_answer: bool = True  # no stated answer (boxed / #### / "The answer is") = wrong
    num_cpus_per_actor: float = Field(0, ge=0)
    num_gpus_per_actor: float = Field(0, ge=0)
    options: dict[str, Any] = {}


class AlgorithmConfig(Section):
    name: str = "tpgrpo"  # any registered algorithm (reward_service.advantages.known_algorithms)
    alpha: float = Field(1.0, ge=0)
    beta: float = Field(0.75, ge=0, le=1)  # reasonflux: weight of the process reward r̂
    clip_eps: float = Field(0.2, gt=0)
    kl_coef: float = Field(0.0, ge=0)


class LearnerConfig(Section):
    num_ranks: int = Field(2, ge=1)
    zero_stage: int = Field(2, ge=0, le=3)  # not a Literal: Literal[0..3] would take `true` as 1
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    micro_batch_size: int = Field(16, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    num_gpus_per_rank: float = Field(0, ge=0)
    num_cpus_per_rank: float = Field(0, ge=0)
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class TrainerConfig(Section):
    max_steps: int = Field(30, ge=0)
    prompts_per_step: int = Field(8, ge=1)
    sync_every: int = Field(1, ge=1)
    max_staleness: int = Field(0, ge=0)
    eval_every: int = Field(0, ge=0)  # 0: evaluate only before and after training
    check_weights_every: int = Field(0, ge=0)  # compare engine and learner weight hashes every N steps
    checkpoint_every: int = Field(0, ge=0)  # 0: never; `--resume` continues from the latest
    keep_checkpoints: int = Field(2, ge=1)  # complete checkpoints kept; older ones are deleted
    output_dir: str = "runs"
    call_timeout_s: float = Field(600.0, gt=0)
    # How weights reach the engines: learner rank 0 broadcasts them in buckets (collective), or
    # puts them in the object store for every engine to map (object_store). auto: collective
    # where it applies (engines of one rank, tensor_parallel_size 1), object_store otherwise.
    weight_sync: Literal["auto", "collective", "object_store"] = "auto"
    # collective: nccl needs learner rank 0 and every engine on distinct GPUs; auto = nccl when
    # both learner ranks and engines hold GPUs, gloo otherwise.
    weight_sync_backend: Literal["auto", "gloo", "nccl"] = "auto"
    weight_bucket_mb: float = Field(256.0, gt=0)  # collective: bytes per broadcast (memory on both sides)
    # collective: the longest wait for one bucket; an engine that dies mid-transfer stalls the
    # others this long before it is replaced
    weight_sync_timeout_s: float = Field(120.0, gt=0)


class MetricsConfig(Section):
    port: int | None = Field(None, ge=0, le=65535)  # serve Prometheus metrics here (0: any free port)
    host: str = "127.0.0.1"  # 0.0.0.0 on a cluster, so Prometheus can reach the driver
    # After the run the endpoint stays up this long, so a scraper sees the final values
    # (at least one scrape interval; a short run otherwise ends between two scrapes).
    linger_s: float = Field(0.0, ge=0.0)


class LabelConfig(Section):
    """The label job (cluster/label.py): step labels for a process reward model."""
    method: str = "montecarlo"  # montecarlo (completions by the rollout actors) or any registered judge
    problems: int = Field(512, ge=1)  # training problems, the first of data.train
    samples_per_problem: int = Field(4, ge=1)  # solutions sampled per problem
    completions: int = Field(8, ge=1)  # montecarlo: completions from each step's prefix
    threshold: float = Field(0.0, ge=0.0, lt=1.0)  # a step is labelled right when its soft label exceeds this
    problems_per_call: int = Field(32, ge=1)  # problems per batch of rollout calls
    options: dict[str, Any] = {}  # the judge's options (montecarlo: none needed)
    output: str | None = None  # a parquet file; None: <run dir>/labels.parquet


class PRMConfig(Section):
    """Training a process reward model on the learner ranks (cluster/prm_train.py)."""
    data: str | None = None  # stepwise .parquet/.jsonl in TRL's layout; None: the label job's output
    init: str | None = None  # the backbone, a Hugging Face causal LM directory; None: the run's policy
    steps: int = Field(400, ge=1)
    batch_size: int = Field(64, ge=1)  # solutions per step, over all ranks
    micro_batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup: int = Field(20, ge=0)
    trajectory_coef: float = Field(0.0, ge=0.0)  # ReasonFlux-PRM's trajectory term; 0: off
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)  # solutions held out to measure step accuracy
    output: str | None = None  # the PRM's directory; None: <run dir>/prm


class LifecycleConfig(Section):
    """What cluster/prm_lifecycle.py does after training the PRM."""
    processbench_problems: int = Field(200, ge=1)  # held-out problems, two samples each
    best_of_n: int = Field(8, ge=2)  # candidates per problem
    best_of_n_problems: int = Field(200, ge=1)  # held-out problems
    rl: bool = True  # a run of the trainer section judged by the trained PRM
    rl_baseline: str | None = None  # the same run judged by this judge too (e.g. tool)


class Config(Section):
    name: str = "local"  # the run directory's name under trainer.output_dir
    seed: int = 0
    model: ModelConfig = ModelConfig()
    prompt: PromptConfig = PromptConfig()
    warm_start: WarmStartConfig = WarmStartConfig()
    data: DataConfig = DataConfig()
    rollout: RolloutConfig = RolloutConfig()
    judge: JudgeConfig = JudgeConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    learner: LearnerConfig = LearnerConfig()
    trainer: TrainerConfig = TrainerConfig()
    metrics: MetricsConfig = MetricsConfig()
    label: LabelConfig = LabelConfig()
    prm: PRMConfig = PRMConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()

    @field_validator("name")
    @classmethod
    def _plain_directory_name(cls, name: str) -> str:
        # The run directory is output_dir/name: a path in the name would put the run elsewhere.
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError("must be a plain directory name (no '/')")
        return name

    @model_validator(mode="after")
    def _staleness_covers_sync(self) -> "Config":
        # Samples drawn right after a sync are trained up to sync_every - 1 steps later.
        if self.trainer.max_staleness < self.trainer.sync_every - 1:
            raise ValueError(
                f"trainer.max_staleness ({self.trainer.max_staleness}) must be at least "
                f"trainer.sync_every - 1 ({self.trainer.sync_every - 1}): samples generated "
                "between syncs would otherwise all be refused")
        return self

    @model_validator(mode="after")
    def _collective_sync_needs_whole_engines(self) -> "Config":
        if self.trainer.weight_sync == "collective" and self.rollout.tensor_parallel_size != 1:
            raise ValueError("trainer.weight_sync: collective sends to one rank per engine; with "
                             "rollout.tensor_parallel_size > 1 use trainer.weight_sync: object_store")
        return self

    @property
    def weight_sync(self) -> str:
        """`trainer.weight_sync` with auto resolved: collective or object_store."""
        if self.trainer.weight_sync != "auto":
            return self.trainer.weight_sync
        return "collective" if self.rollout.tensor_parallel_size == 1 else "object_store"

    @property
    def weight_channel(self) -> str:
        """The collective weight sync's channel, `trainer.weight_sync_backend` with auto resolved."""
        if self.trainer.weight_sync_backend != "auto":
            return self.trainer.weight_sync_backend
        on_gpus = self.learner.num_gpus_per_rank > 0 and self.rollout.num_gpus_per_actor > 0
        return "nccl" if on_gpus else "gloo"

    @model_validator(mode="after")
    def _habit_needs_a_task_with_one(self) -> "Config":
        if self.warm_start.habit_rate is None:
            return self
        task = synthetic_task(self.data.synthetic)
        if self.data.train != SYNTHETIC or SYNTHETIC_TASKS[task].habit_rows is None:
            with_habit = [name for name, t in SYNTHETIC_TASKS.items() if t.habit_rows is not None]
            raise ValueError(f"warm_start.habit_rate needs data.train: {SYNTHETIC} with a task that has a habit "
                             f"({', '.join(with_habit)}); this run trains on {self.data.train!r}, task {task!r}")
        return self

    @model_validator(mode="after")
    def _prm_batch_feeds_every_rank(self) -> "Config":
        if self.prm.batch_size < self.learner.num_ranks:
            raise ValueError(f"prm.batch_size ({self.prm.batch_size}) must be at least learner.num_ranks "
                             f"({self.learner.num_ranks}): every rank trains on its share of each batch")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.output_dir) / self.name


class ConfigError(ValueError):
    """A config problem, phrased for the user: names the file and the field."""


class _YamlLoader(yaml.SafeLoader):
    """YAML as written by people: `1e-4` is a float (PyYAML reads it as a string, YAML 1.2 does not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{k}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` with the value read as YAML (so 2 is an int, true a bool, [1,2] a list)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    return key.strip(), _read_yaml(raw) if raw.strip() else None


def _known_fields(loc: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        field = ".".join(str(p) for p in loc) or "(config)"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_fields(loc), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"  {field}: unknown field{hint}")
        elif loc:
            lines.append(f"  {field}: {e['msg'].removeprefix('Value error, ')} (got {e['input']!r})")
        else:
            lines.append(f"  {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    tree: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            tree = _read_yaml(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    for text in overrides:
        key, value = parse_override(text)
        _set_path(tree, key, value)
    try:
        # strict here too: it reaches the sections defined elsewhere (tiny model, task, fields)
        return Config.model_validate(tree, strict=True)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None
