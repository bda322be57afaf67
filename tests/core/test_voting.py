"""Cluster voting: hand-worked groups, tie policies, the gate, and a per-group reference under hypothesis."""

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_rlif.config import VoteConfig
from verl_rlif.core.voting import cluster_vote


def test_majority_single_winner():
    # answers 5,5,5,2: cluster "5" has 3 of 4
    r = cluster_vote(["q"] * 4, ["5", "5", "5", "2"])
    assert r.rewards.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert r.majority_ratio.tolist() == [0.75]
    assert r.num_clusters.tolist() == [2]
    assert r.answer_rate.tolist() == [1.0]
    assert r.in_majority.tolist() == [True, True, True, False]


def test_share_mode_is_cluster_size_over_group_size():
    r = cluster_vote(["q"] * 4, ["5", "5", "5", "2"], VoteConfig(mode="share"))
    assert r.rewards.tolist() == pytest.approx([0.75, 0.75, 0.75, 0.25])


def test_none_and_empty_strings_never_vote():
    # Only the two "5"s answered; the group size stays 5 for ratios.
    keys = ["5", None, "", "  ", "5"]
    r = cluster_vote(["q"] * 5, keys)
    assert r.rewards.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert r.cluster.tolist()[1:4] == [-1, -1, -1]
    assert r.answer_rate.item() == pytest.approx(0.4)
    assert r.majority_ratio.item() == pytest.approx(0.4)
    assert r.num_clusters.tolist() == [1]
    share = cluster_vote(["q"] * 5, keys, VoteConfig(mode="share"))
    assert share.rewards.tolist() == pytest.approx([0.4, 0.0, 0.0, 0.0, 0.4])


def test_falsy_non_string_keys_are_answers():
    r = cluster_vote([1, 1, 1], [0, 0, (1, 2)])
    assert r.rewards.tolist() == [1.0, 1.0, 0.0]
    assert r.answer_rate.tolist() == [1.0]


@pytest.mark.parametrize(
    "policy, expected",
    [("all", [1, 1, 1, 1, 0]), ("none", [0, 0, 0, 0, 0]), ("first", [1, 1, 0, 0, 0])],
)
def test_tie_policies(policy, expected):
    # clusters {1: 2 votes, 2: 2 votes, 3: 1 vote}: a two-way tie at the top
    r = cluster_vote(["q"] * 5, ["1", "1", "2", "2", "3"], VoteConfig(tie_policy=policy))
    assert r.rewards.tolist() == [float(x) for x in expected]


def test_first_tie_policy_follows_batch_order():
    # "2" appears first, so it wins the 2-2 tie
    r = cluster_vote(["q"] * 4, ["2", "1", "1", "2"], VoteConfig(tie_policy="first"))
    assert r.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "keys, gate, passes",
    [
        (["1", "2", "3", "4", "4"], 0.5, False),  # top 2/5 = 0.4 < 0.5
        (["1", "2", "3", "4", "4"], 0.4, True),  # exactly at the gate passes
        (["a"] * 3 + list("bcdefgh"), 0.3, True),  # 3/10 against 0.3 (float rounding edge)
        (["a"] * 7 + list("bcd"), 0.7, True),  # 7/10 against 0.7
    ],
)
def test_min_majority_ratio_gate(keys, gate, passes):
    r = cluster_vote(["q"] * len(keys), keys, VoteConfig(min_majority_ratio=gate))
    assert (r.rewards.sum() > 0).item() is passes
    # the statistics are reported whether or not the gate passes
    assert r.majority_ratio.item() == pytest.approx(Counter(keys).most_common(1)[0][1] / len(keys))


def test_clusters_never_cross_groups():
    # the same answer "1" in groups a and b forms two clusters
    r = cluster_vote(["a", "b", "a", "b"], ["1", "1", "2", "1"], VoteConfig(tie_policy="none"))
    assert r.cluster[0] != r.cluster[1]
    assert r.rewards.tolist() == [0.0, 1.0, 0.0, 1.0]  # a is a 1-1 tie (no winner), b is unanimous
    assert r.group.tolist() == [0, 1, 0, 1]
    assert r.num_clusters.tolist() == [2, 1]


def test_group_without_answers():
    r = cluster_vote(["a", "a", "b"], [None, "", "7"])
    assert r.rewards.tolist() == [0.0, 0.0, 1.0]
    assert r.majority_ratio.tolist() == [0.0, 1.0]
    assert r.num_clusters.tolist() == [0, 1]
    assert r.answer_rate.tolist() == [0.0, 1.0]


def test_integer_tensor_group_ids():
    r = cluster_vote(torch.tensor([7, 3, 7, 3]), ["x", "y", "x", "z"], VoteConfig(tie_policy="none"))
    assert r.rewards.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert r.group.tolist() == [0, 1, 0, 1]  # order of first appearance, not sorted order


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 group ids but 3 answer keys"):
        cluster_vote(["a", "a"], ["1", "2", "3"])


def test_bad_config_names_choices():
    with pytest.raises(ValueError, match=r"\['majority', 'share'\]"):
        VoteConfig(mode="plurality")
    with pytest.raises(ValueError, match=r"\['all', 'none', 'first'\]"):
        VoteConfig(tie_policy="random")
    with pytest.raises(ValueError, match="min_majority_ratio"):
        VoteConfig(min_majority_ratio=1.5)


# ---------------------------------------------------------------------------------------------------------------
# Reference: a plain per-group loop, written independently of the vectorised code.


def reference_vote(groups, keys, config):
    rewards = [0.0] * len(keys)
    for g in dict.fromkeys(groups):
        members = [i for i, gi in enumerate(groups) if gi == g]
        answered = [i for i in members if not (keys[i] is None or (isinstance(keys[i], str) and not keys[i].strip()))]
        counts = Counter(keys[i] for i in answered)
        if not counts:
            continue
        top = max(counts.values())
        tops = [k for k, c in counts.items() if c == top]  # Counter keeps first-seen order
        winners = {"all": set(tops), "none": set(tops) if len(tops) == 1 else set(), "first": {tops[0]}}
        if top / len(members) < config.min_majority_ratio:
            continue
        for i in answered:
            if config.mode == "share":
                rewards[i] = counts[keys[i]] / len(members)
            else:
                rewards[i] = float(keys[i] in winners[config.tie_policy])
    return rewards


answers = st.sampled_from(["1", "2", "3", "", None, "x y", 4])
batches = st.lists(st.tuples(st.integers(0, 4), answers), min_size=1, max_size=40)
configs = st.builds(
    VoteConfig,
    mode=st.sampled_from(["majority", "share"]),
    tie_policy=st.sampled_from(["all", "none", "first"]),
    min_majority_ratio=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
)


@settings(max_examples=300, deadline=None)
@given(batches, configs)
def test_matches_per_group_reference(batch, config):
    groups, keys = zip(*batch, strict=True)
    r = cluster_vote(list(groups), list(keys), config)
    assert r.rewards.tolist() == pytest.approx(reference_vote(groups, keys, config), abs=1e-6)
    assert torch.isfinite(r.majority_ratio).all() and torch.isfinite(r.answer_rate).all()
    assert ((r.rewards >= 0) & (r.rewards <= 1)).all()


@settings(max_examples=200, deadline=None)
@given(batches, st.sampled_from(["all", "none"]), st.sampled_from(["majority", "share"]), st.randoms())
def test_permutation_equivariant(batch, tie_policy, mode, rnd):
    # Permuting responses (within and across groups) permutes the rewards: order-free policies only.
    config = VoteConfig(mode=mode, tie_policy=tie_policy)
    perm = list(range(len(batch)))
    rnd.shuffle(perm)
    groups, keys = zip(*batch, strict=True)
    base = cluster_vote(list(groups), list(keys), config).rewards
    permuted = cluster_vote([groups[i] for i in perm], [keys[i] for i in perm], config).rewards
    assert torch.equal(permuted, base[perm])


def test_segment_extrema_ignore_the_fill_value():
    from verl_rlif.core.segments import segment_amax, segment_amin

    values = torch.tensor([0.1, 0.3, -2.0])
    codes = torch.tensor([0, 0, 2])  # group 1 is empty
    assert segment_amin(values, codes, 3, fill=0.0).tolist() == pytest.approx([0.1, 0.0, -2.0])
    assert segment_amax(values, codes, 3, fill=0.0).tolist() == pytest.approx([0.3, 0.0, -2.0])
