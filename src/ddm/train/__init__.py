"""Target training with trajectory recording."""

from ddm.train.loop import accuracy, train_model
from ddm.train.trajectory import Trajectory, TrajectoryRecorder

__all__ = ["Trajectory", "TrajectoryRecorder", "accuracy", "train_model"]
