"""Offline replay evaluation of traditional storefront strategies (``vitrine eval``).

- ``protocol``: what is scored when (time-ordered replay, same-second groups, targets per dataset).
- ``history``: the counts the past knows at a point of the replay; updated only between groups.
- ``strategies``: the baselines (popularity, category affinity, co-visitation, session-kNN,
  own history / re-buy and its blend with co-occurrence).
- ``cascade``: the generative cascade (teacher or student writer) planned, retrieved and fused from the same
  past, as the generator builds a page (``--catalog``, ``--model-dir``).
- ``tuning``: the fusion-weight grid on the earlier events, scored on the rest (``--tune``).
- ``metrics``: hit rate, NDCG, coverage, diversity and cluster bootstrap confidence intervals.
- ``report``: the printed table, paired comparisons and the Markdown report.
"""

from streams.evaluation.protocol import EvalConfig, EvalRun, evaluate

__all__ = ["EvalConfig", "EvalRun", "evaluate"]
