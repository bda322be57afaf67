"""Vote-aware dynamic sampling's test: a group is dropped exactly when its vote reward is flat."""

from verl_rlif.config import VoteConfig
from verl_rlif.core.group_filter import uninformative_groups


def test_unanimous_and_answerless_groups_are_uninformative():
    groups = ["one", "one", "one", "none", "none", "mixed", "mixed", "mixed", "gap", "gap"]
    keys = ["7", "7", "7", None, "", "7", "8", "7", "7", None]
    # "gap": one cluster but one member without an answer, so the vote still separates them (1 vs 0)
    assert uninformative_groups(groups, keys, VoteConfig()) == {"one", "none"}


def test_ties_every_member_wins_are_uninformative_only_under_that_policy():
    groups, keys = ["t"] * 4, ["1", "2", "3", "4"]
    assert uninformative_groups(groups, keys, VoteConfig(tie_policy="all")) == {"t"}  # all win: all 1
    assert uninformative_groups(groups, keys, VoteConfig(tie_policy="none")) == {"t"}  # nobody wins: all 0
    assert uninformative_groups(groups, keys, VoteConfig(tie_policy="first")) == set()  # "1" wins alone
    assert uninformative_groups(groups, keys, VoteConfig(mode="share")) == {"t"}  # each 1/4
    assert uninformative_groups(["s"] * 3, ["1", "1", "2"], VoteConfig(mode="share")) == set()


def test_the_majority_gate_can_flatten_a_group():
    groups, keys = ["g"] * 4, ["1", "1", "2", "3"]
    assert uninformative_groups(groups, keys, VoteConfig()) == set()
    assert uninformative_groups(groups, keys, VoteConfig(min_majority_ratio=0.75)) == {"g"}


def test_empty_batch():
    assert uninformative_groups([], [], VoteConfig()) == set()
