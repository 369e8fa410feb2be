"""Every prediction the model can produce travels in the plugin's plan reply (msgpack)
and comes back as the same :class:`Prediction` on the client."""

import dataclasses
import random

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from amorsize_dask.settings import Settings
from amorsize_dask.cluster.plugin import _plain
from amorsize_dask.learning.model import CostsNow, Observation, predict
from amorsize_dask.cluster.client import prediction_from_reply

ENGINES = ("serial", "dask")

observations = st.lists(
    st.builds(
        Observation,
        workload=st.just("w"),
        n_items=st.integers(1, 10**7),
        item_seconds=st.floats(0, 10, allow_nan=False),
        engine=st.sampled_from(ENGINES),
        n_workers=st.integers(1, 256),
        chunksize=st.integers(1, 10**6),
        run_seconds=st.floats(1e-9, 1e5, allow_nan=False),
        time=st.floats(0, 2e9, allow_nan=False),
    ),
    min_size=1,
    max_size=12,
)


ALWAYS_EXPLORE = Settings.from_config().replace(explore_probability=1.0)


@settings(max_examples=300, deadline=None)
@given(observations, st.integers(1, 10**7), st.integers(1, 512), st.integers(0, 2**32), st.booleans(),
       st.booleans())
def test_every_prediction_serialises_and_round_trips(obs, n_items, cores, seed, explore, with_estimate):
    estimate = (lambda cfg: 1.0 + cfg[1] * 1e-3) if with_estimate else None
    pred = predict(obs, n_items, cores=cores, settings=ALWAYS_EXPLORE, engines=ENGINES,
                   explore=random.Random(seed) if explore else False, now=CostsNow(estimate=estimate))
    assert pred is not None
    reply = {"fingerprint": "0" * 16, "cores": cores, "plan": _plain(dataclasses.asdict(pred))}
    wire = msgpack.unpackb(msgpack.packb(reply, use_bin_type=True), raw=False)
    assert prediction_from_reply(wire["plan"]) == pred


def test_an_explored_prediction_carries_its_best_config():
    obs = [Observation("w", 1000, 1e-3, "dask", 2, 50, 0.6, 0.0)] * 3
    pred = predict(obs, 1000, cores=2, settings=ALWAYS_EXPLORE, engines=ENGINES,
                   explore=random.Random(1), now=CostsNow(estimate=lambda cfg: 1.0))
    assert pred.explored and isinstance(pred.best_config, tuple)
    plain = _plain(dataclasses.asdict(pred))  # failed: float() of a tuple
    assert prediction_from_reply(plain) == pred
