"""The grading pool inside a Ray actor, called from the actor's worker threads."""
import ray


def test_pool_in_a_threaded_ray_actor(ray_local):
    from reward_service.grading import GradingPool

    @ray.remote(max_concurrency=3)
    class Grader:
        def __init__(self):
            self.pool = GradingPool(num_workers=1, timeout_s=3.0)

        def grade(self, response, gold):
            g = self.pool.grade(response, gold)
            return g.correct, g.error

        def timeouts(self):
            return self.pool.timeouts

    actor = Grader.remote()
    refs = [actor.grade.remote("\\boxed{\\frac{1}{2}}", "0.5"),
            actor.grade.remote("\\boxed{\\dfrac{5^{5^{5^{5^5}}}}{2}}", "1"),
            actor.grade.remote("\\boxed{\\sqrt{9}}", "3")]
    assert ray.get(refs, timeout=120) == [(True, None), (False, "timeout"), (True, None)]
    assert ray.get(actor.timeouts.remote(), timeout=30) == 1
