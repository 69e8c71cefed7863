"""ember_torch: ember's models in PyTorch, for training anywhere and serving with ember.

    import ember_torch as et
    model = et.train(x, y, method="dfo", steps=2000, seed=1)   # ember's recipe, on any device
    et.save_ember(model, "models/policy/1.safetensors")        # emberd hot-loads it
    model = et.load_ember("trained-by-ember.safetensors")       # and the other way
    y, energy = et.predict(model, x_rows, seed=7)               # emberd's Predict, in PyTorch

Pure Python on numpy and torch; nothing of ember needs to be built. docs/torch.md is the guide.
"""
from .infer import dfo_batched, predict
from .encoder import Encoder
from .model import EmberModel, fit_stats, infer_defaults, load_ember, metadata_of, save_ember
from .nets import EnergyNet, SNLinear
from .rng import Streams
from .safetensors import FormatError
from .training import Trainer, init_distributed, recipe, set_threads, train, world

__all__ = ["EmberModel", "Encoder", "EnergyNet", "FormatError", "SNLinear", "Streams", "Trainer",
           "dfo_batched", "fit_stats", "infer_defaults", "init_distributed", "load_ember",
           "metadata_of", "predict", "recipe", "save_ember", "set_threads", "train", "world"]
