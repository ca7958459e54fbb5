"""Every lab's hyperparameters and defaults, registered by name.

These live apart from the lab modules on purpose: importing torch takes ~3 s on a 2-core
laptop, and `tune-lab --help`, `tune-lab list` and the check of a search file must answer
before that. Each lab module (`module=` below) holds the models and the train/eval step and
reads its settings from the dataclass registered here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from labspec.config import hp
from labspec.registry import Cost, register_lab

# The labs' costs (`cost=`, for `tune-lab reproduce --dry-run`), measured on the 2-core Intel Xeon @ 2.80GHz
# tune-lab was developed on (2 cores shared with other work, load 2-4) on 2026-12-02: one epoch of each lab's
# Trainer on 1,024 real training samples (2,048 for vae / cgan, second epoch) with one torch thread, as a
# 1-CPU trial runs, timing train_epoch and evaluate apart. The CIFAR stem was not timed: ~16x the ImageNet
# stem's compute (README, lab 2). seq2seq is per training pair at max_length 10. mlp: docs/benchmarks.md's
# whole epoch on a quiet machine (2.2-2.7 s for 55,000 images, batch 256); `reproduce lab1 --quick` at load 6
# took 4.2 s per trial-epoch. linreg: 3 epochs of its 1,000 points at batch 10 (load 6). Rough (the
# machine's load moves them by 2x): for planning.
RESNET_COSTS = {"lenet": Cost(1.6e-4, 1.3), "imagenet": Cost(5.0e-3, 16.5), "cifar": Cost(8.0e-2, 264.0)}


def mlp_cost(config: Mapping[str, Any]) -> Cost:
    return Cost(4.3e-6, 0.02) if config.get("model") == "softmax" else Cost(4.5e-5, 0.1)


def resnet_cost(config: Mapping[str, Any]) -> Cost:
    if config.get("model") == "lenet":
        return RESNET_COSTS["lenet"]
    return RESNET_COSTS["imagenet" if config.get("faithful") else config.get("stem", "cifar")]


CLASSIFIER_METRICS = {"train_loss": "min", "train_acc": "max", "val_loss": "min", "val_acc": "max",
                      "test_loss": "min", "test_acc": "max"}


@dataclass
class TrainConfig:
    """Settings every lab's epoch loop understands."""

    epochs: int = hp(20, min=1, max=10_000)
    batch_size: int = hp(256, min=1, max=1_000_000)
    lr: float = hp(0.005, min=0.0, max=100.0)
    optimizer: Literal["sgd", "adam", "adadelta"] = "adam"
    momentum: float = hp(0.0, min=0.0, max=1.0, help="SGD only")
    nesterov: bool = False
    weight_decay: float = hp(0.0, min=0.0, max=1.0)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    seed: int = hp(0, min=0)


@register_lab(
    "mlp",
    module="trainables.mlp",
    datasets=("mnist", "fashion_mnist", "digits"),
    fallback_dataset="digits",
    description="Lab 1: softmax regression and a 3-hidden-layer MLP on MNIST / Fashion-MNIST",
    metrics=CLASSIFIER_METRICS,
    metric="val_acc",
    gpu_fraction=0.25,
    cost=mlp_cost,
)
@dataclass
class MLPConfig(TrainConfig):
    model: Literal["mlp", "softmax"] = "mlp"
    # true: the lab's network as written (ReLU and softmax on the output layer); false: logits.
    faithful: bool = False
    loss: Literal["cross_entropy", "nll", "mse"] = "cross_entropy"
    # Against the lab's late-epoch overfitting: dropout (not in the faithful network), cosine decay,
    # a little weight decay (docs/results.md, "Lab 1").
    dropout: float = hp(0.1, min=0.0, max=0.9)
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    weight_decay: float = hp(1e-4, min=0.0, max=1.0)


@register_lab(
    "linreg",
    module="trainables.linreg",
    datasets=("synthetic",),
    description="Lab 1: linear regression y = Xw + b + noise on synthetic data, fitted by minibatch SGD",
    # w_error / b_error: the largest |recovered - true| of w, and |recovered - true| of b (lab 1 asks within 0.05)
    metrics={"train_loss": "min", "val_loss": "min", "w_error": "min", "b_error": "min"},
    metric="val_loss",
    gpu_fraction=0.1,
    loss_unit="mean squared error",
    cost=Cost(1.5e-5, 0.001),
)
@dataclass
class LinRegConfig(TrainConfig):
    # The lab's fit: minibatches of 10 points, plain SGD at lr 0.03, 3 epochs.
    epochs: int = hp(3, min=1, max=1000)
    batch_size: int = hp(10, min=1, max=100_000)
    lr: float = hp(0.03, min=0.0, max=10.0)
    optimizer: Literal["sgd", "adam", "adadelta"] = "sgd"


@register_lab(
    "resnet",
    module="trainables.resnet",
    datasets=("cifar10", "mnist", "fashion_mnist"),
    description="Lab 2: LeNet-5 and ResNet18 on CIFAR-10 (also MNIST / Fashion-MNIST)",
    metrics=CLASSIFIER_METRICS,
    metric="val_acc",
    gpu_fraction=0.5,
    cost=resnet_cost,
)
@dataclass
class ResNetConfig(TrainConfig):
    # The lab's settings: batch 64, Adam at lr 0.001 (10-30 epochs; 20 kept from TrainConfig).
    batch_size: int = hp(64, min=1, max=1_000_000)
    lr: float = hp(0.001, min=0.0, max=100.0)
    optimizer: Literal["sgd", "adam", "adadelta"] = "adam"
    model: Literal["lenet", "resnet18"] = "resnet18"
    # imagenet: conv7x7 stride 2 + maxpool (the lab's; 32x32 -> 8x8 before stage 1); cifar: conv3x3 stride 1.
    stem: Literal["cifar", "imagenet"] = "cifar"
    # Random 4-pixel-padded crop + horizontal flip of each training batch, on the trial's device.
    augment: bool = False
    # true: the lab's ResNet18 as written: ImageNet stem, no augmentation, no label smoothing.
    faithful: bool = False
    label_smoothing: float = hp(0.0, min=0.0, max=0.5)


@register_lab(
    "seq2seq",
    module="trainables.seq2seq",
    datasets=("eng_fra",),
    description="Lab 3: French -> English seq2seq (RNN / GRU / LSTM / hand-written GRU cells), scored by BLEU",
    metrics={"train_loss": "min", "val_loss": "min", "val_bleu": "max", "test_bleu": "max"},
    metric="val_bleu",
    gpu_fraction=0.25,
    loss_unit="loss per target word",
    cost=Cost(1.9e-3, 2.3),
)
@dataclass
class Seq2SeqConfig(TrainConfig):
    # Corrected defaults: batches of 64 pairs, Adam; the lab's own were one pair a step, SGD lr 0.01,
    # hidden 512 (`--set optimizer=sgd lr=0.01 batch_size=1 hidden_size=512 attention=false`).
    epochs: int = hp(20, min=1, max=10_000)
    batch_size: int = hp(64, min=1, max=1_000_000)
    lr: float = hp(0.002, min=0.0, max=100.0)
    cell: Literal["rnn", "gru", "lstm", "gru_scratch"] = "gru"
    # true: the lab's hand-written GRU (raw h added inside the gates); only matters for gru_scratch.
    faithful: bool = False
    hidden_size: int = hp(256, min=2, max=8192, help="embedding and recurrent state size")
    attention: bool = True  # Luong (general) attention over the encoder's outputs; the lab had none
    # Pairs are kept when both sides are shorter than max_length words (lab: 10 and 64).
    max_length: int = hp(10, min=2, max=1000)
    eng_prefix_filter: bool = True  # keep only English sides starting "i am", "he is", ... (the tutorial's)
    teacher_forcing: float = hp(1.0, min=0.0, max=1.0, help="share of sentences fed the reference words")
    dropout: float = hp(0.1, min=0.0, max=0.9)
    grad_clip: float = hp(1.0, min=0.0, max=1e6, help="max gradient norm; 0 turns clipping off")


# --------------------------------------------------------------------------- generative labs (GANs)
# d_real / d_fake (the discriminator's mean score on real / generated images) read from D's side.
GAN_METRICS = {"d_loss": "min", "g_loss": "min", "d_real": "max", "d_fake": "min", "fid": "min", "readable": "max"}
GENERATIVE_DATASETS = ("mnist", "fashion_mnist", "cifar10")


@dataclass
class GANConfig(TrainConfig):
    """Settings both GAN labs share (lr_schedule is ignored: GANs here train at a constant rate)."""

    batch_size: int = hp(64, min=1, max=1_000_000)
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    beta1: float = hp(0.5, min=0.0, max=1.0, help="Adam only")
    beta2: float = hp(0.999, min=0.0, max=1.0, help="Adam only")
    latent_dim: int = hp(100, min=1, max=4096)
    # native: the dataset's channels (1 for MNIST / Fashion, 3 for CIFAR); lab: 3 channels as the lab fed them.
    channels: Literal["native", "lab"] = "native"
    # Generated images measured every epoch (FID against the validation split, conditional accuracy).
    quality_samples: int = hp(2000, min=10, max=100_000)
    sample_every: int = hp(1, min=1, max=10_000, help="epochs between progress grids")


@register_lab(
    "wgan",
    module="trainables.wgan",
    datasets=GENERATIVE_DATASETS,
    description="Lab 4: Wasserstein GAN (weight clipping as in the lab, or gradient penalty), FID measured",
    metrics=GAN_METRICS,
    metric="fid",
    gpu_fraction=0.5,
    sampler="unconditional",
    cost=Cost(2.9e-3, 3.8, quality_scaled=True),
    fractions=("readable",),
)
@dataclass
class WGANConfig(GANConfig):
    epochs: int = hp(10, min=1, max=10_000)
    # Corrected default: WGAN-GP (Gulrajani et al.: penalty 10, Adam betas (0.5, 0.9)) with a
    # layer-normalised critic at lr 1e-3, the lowest FID we measured (docs/results.md, "Lab 4").
    lr: float = hp(1e-3, min=0.0, max=100.0)
    beta2: float = hp(0.9, min=0.0, max=1.0, help="Adam only")
    # true: the lab's generator and BatchNorm critic with weight clipping, whatever `critic` says; false: the same generator, a critic normalised per image
    # (`critic_norm`; a per-sample gradient penalty is meaningless through batch statistics) and `critic`.
    faithful: bool = False
    critic: Literal["gp", "clip"] = "gp"
    # The corrected critic's normalisation: per-image layer norm, or none.
    critic_norm: Literal["layer", "none"] = "layer"
    n_critic: int = hp(5, min=1, max=100, help="critic steps per generator step")
    clip_value: float = hp(0.01, min=0.0, max=10.0, help="weight clipping only")
    gp_weight: float = hp(10.0, min=0.0, max=1000.0, help="gradient penalty only")


@register_lab(
    "cgan",
    module="trainables.cgan",
    datasets=GENERATIVE_DATASETS,
    description="Lab 5: conditional GAN for digits; conditional accuracy and FID measured by a reference classifier",
    metrics={**GAN_METRICS, "cond_acc": "max"},
    metric="cond_acc",
    gpu_fraction=0.5,
    sampler="conditional",
    cost=Cost(6.0e-4, 3.0, quality_scaled=True),
    fractions=("readable",),
)
@dataclass
class CGANConfig(GANConfig):
    epochs: int = hp(10, min=1, max=10_000)
    lr: float = hp(2e-4, min=0.0, max=100.0)
    # true: the lab's generator (Linear -> 1x56x56 -> conv -> conv stride 2) and its 10-sigmoid
    # discriminator that never sees the label (BCE against the one-hot label, SGD); false: a
    # conditional DCGAN whose discriminator takes the label (projection), non-saturating loss, Adam.
    faithful: bool = False
    n_critic: int = hp(1, min=1, max=100, help="discriminator steps per generator step")
    # Weight of the corrected discriminator's auxiliary digit classifier (AC-GAN) in D's and G's
    # losses; 0 leaves the projection alone; 10 drew the most readable digits (docs/results.md, "Lab 5").
    aux_weight: float = hp(10.0, min=0.0, max=100.0)
    # 16 keeps a CPU epoch to minutes; 32 or the usual DCGAN 64 where a GPU is at hand.
    width: int = hp(16, min=4, max=1024, help="channels of the corrected networks' widest layer")


# --------------------------------------------------------------------------- generative labs (autoencoders)
@dataclass
class AutoencoderConfig(TrainConfig):
    """Settings the autoencoder and the VAE share (the lab: batch 64, Adam)."""

    batch_size: int = hp(64, min=1, max=1_000_000)
    # Size of the code / latent vector. Ignored by the faithful models (64 for the ae, 128 for the vae).
    latent_dim: int = hp(64, min=1, max=4096)
    # native: the dataset's own channels (1 for the digits); lab: 3 channels as the lab fed them.
    channels: Literal["native", "lab"] = "native"
    # true: the lab's network as written, on its 3-channel input (whatever `channels` says).
    faithful: bool = False
    # A grid of fixed inputs' reconstructions (ae) or fixed noise's samples (vae) every this many epochs.
    sample_every: int = hp(2, min=1, max=10_000)


@register_lab(
    "ae",
    module="trainables.autoencoders",
    datasets=GENERATIVE_DATASETS,
    description="Lab 4: convolutional autoencoder on MNIST / Fashion-MNIST / CIFAR-10 (28x28)",
    metrics={"train_loss": "min", "val_loss": "min", "val_mse": "min", "test_mse": "min"},
    metric="val_mse",
    gpu_fraction=0.25,
    loss_unit="MSE per pixel",
    cost=Cost(6.2e-4, 2.9),
)
@dataclass
class AEConfig(AutoencoderConfig):
    # The lab's settings (Adam, 20 epochs, a 64-d code); lr 5e-3 was the best of `ae --search lr`.
    lr: float = hp(0.005, min=0.0, max=100.0)


def vae_loss_unit(config: Mapping[str, Any]) -> str:
    """The VAE's loss as a trial's settings make it (trainables.vae.vae_objective); an unset key has VAEConfig's default."""
    if config.get("faithful", VAEConfig.faithful):
        return "the lab's loss: MSE per pixel + KL per image"
    weight = config.get("kl_weight", VAEConfig.kl_weight)
    if config.get("recon_loss", VAEConfig.recon_loss) == "bce":
        return "-ELBO per image (nats)" if weight == 1 else f"BCE + {weight:g} x KL per image (nats)"
    return f"squared error summed per image + {weight:g} x KL"


@register_lab(
    "vae",
    module="trainables.vae",
    datasets=GENERATIVE_DATASETS,
    description="Lab 4: convolutional variational autoencoder on MNIST / Fashion-MNIST / CIFAR-10 (28x28)",
    metrics={"train_loss": "min", "val_loss": "min", "val_mse": "min", "val_kl": "min", "val_elbo": "max",
             "val_fid": "min", "readable": "max", "test_mse": "min", "test_elbo": "max"},
    metric="val_elbo",
    gpu_fraction=0.25,
    sampler="unconditional",
    loss_unit=vae_loss_unit,
    cost=Cost(1.0e-3, 7.0, quality_scaled=True),
    fractions=("readable",),
)
@dataclass
class VAEConfig(AutoencoderConfig):
    # The lab trained with Adam at lr 0.01 for 40 epochs; 1e-3 is Adam's usual rate (see README:
    # not a measured fix). 16 latent dimensions instead of the lab's 128.
    lr: float = hp(0.001, min=0.0, max=100.0)
    epochs: int = hp(40, min=1, max=10_000)
    latent_dim: int = hp(16, min=1, max=4096)
    # Reconstruction term: summed over pixels per image, so it and the KL (summed over latent
    # dimensions per image) weigh one image each. bce is the Bernoulli likelihood of [0, 1] pixels.
    # The faithful model keeps the lab's loss: the mean squared error per pixel plus the KL
    # summed over 128 dimensions, which outweighs it by three orders of magnitude.
    recon_loss: Literal["bce", "mse"] = "bce"
    # Weight of the KL term (1: the ELBO; <1 favours reconstructions, >1 the prior).
    kl_weight: float = hp(1.0, min=0.0, max=1000.0)
    # Samples whose FID against the validation images is val_fid (and whose share the reference
    # classifier reads as one class is `readable`), every epoch.
    quality_samples: int = hp(2000, min=10, max=100_000)
    # Where samples come from (val_fid, readable, progress grids, report, `tune-lab generate`).
    # normal: z ~ N(0, I), the prior the ELBO trains against. mixture: after every epoch a Gaussian
    # mixture of `prior_components` full-covariance components is fitted to the posterior means of
    # (up to 10,000) training images, and z is drawn from it ("ex-post density estimation",
    # Ghosh et al. 2020). Why: N(0, I) puts mass where no training image's code lies, and those
    # codes decode to blends of digits (docs/results.md, "Lab 4"). The faithful model keeps N(0, I).
    prior: Literal["normal", "mixture"] = "mixture"
    prior_components: int = hp(20, min=1, max=1000)
