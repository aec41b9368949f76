"""ddm: training-data attribution with Distilled Datamodels (reverse gradient matching).

Quickstart::

    import ddm
    data = ddm.data.load("digits")
    dm = ddm.DistilledDatamodel("runs/digits", ddm.presets.demo(data))
    dm.fit(ddm.models.build("convnet", data), data.train)
    attr = dm.attribute(data.test[:20], objective="dist1")
    print(attr.top(0, k=5))
"""

from ddm import attribution, cluster, data, distill, emulate, models, objectives, presets, train
from ddm.attribution import AttributionMatrix
from ddm.config import RunConfig
from ddm.pipeline import DistilledDatamodel
from ddm.train import Trajectory, TrajectoryRecorder

__version__ = "0.1.0"

__all__ = [
    "AttributionMatrix", "DistilledDatamodel", "RunConfig", "Trajectory", "TrajectoryRecorder", "attribution",
    "cluster", "data", "distill", "emulate", "models", "objectives", "presets", "train",
]
