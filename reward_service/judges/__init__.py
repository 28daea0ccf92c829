"""Step judges behind one interface (`StepJudge`), chosen by name."""
from reward_service.judges.base import StepJudge, StepJudgment
from reward_service.judges.registry import get_judge, known_judges, register

__all__ = ["StepJudge", "StepJudgment", "get_judge", "known_judges", "register"]
