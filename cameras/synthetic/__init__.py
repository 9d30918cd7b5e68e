"""The synthetic micro-expression camera: the default source and the training-data generator.

``SyntheticCamera`` renders a seeded face video at 200-500 fps with micro-expressions,
macro-expressions, blinks, head motion, flicker and sensor noise, and reports the ground
truth of every event. See `mestream.cameras.synthetic.camera` for the rendering model.
"""

from mestream.cameras.synthetic.aus import (
    AU_COMBINATIONS,
    EMOTIONS,
    FOUR_CLASS,
    FOUR_CLASSES,
    NO_EMOTION,
    four_class,
)
from mestream.cameras.synthetic.camera import SyntheticCamera
from mestream.cameras.synthetic.schedule import GROUND_TRUTH_KINDS, LABELS, Event, SceneConfig, dfme_is_micro
from mestream.cameras.synthetic.subject import Subject
from mestream.cameras.synthetic.truth import FrameTruth, read_ground_truth

__all__ = [
    "AU_COMBINATIONS",
    "EMOTIONS",
    "FOUR_CLASS",
    "FOUR_CLASSES",
    "GROUND_TRUTH_KINDS",
    "LABELS",
    "NO_EMOTION",
    "Event",
    "FrameTruth",
    "SceneConfig",
    "Subject",
    "SyntheticCamera",
    "dfme_is_micro",
    "four_class",
    "read_ground_truth",
]
