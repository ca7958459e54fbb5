"""A small CNN on Fashion-MNIST: a lab of your own for tune-lab, in one file.

    tune-lab --labs fashion_cnn.py fashion_cnn --search fashion_cnn.yaml
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import tune_lab


@dataclass
class FashionCNN:  # what a search may vary, with the defaults
    lr: float = 1e-3
    width: int = 16
    dropout: float = 0.25
    epochs: int = 5
    batch_size: int = 128
    seed: int = 0


@tune_lab.lab("fashion_cnn", config=FashionCNN, datasets=("fashion_mnist", "mnist"))
def fashion_cnn(cfg: FashionCNN, data, device):
    """A two-block CNN on Fashion-MNIST"""
    block = lambda cin, cout: [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]  # noqa: E731
    model = nn.Sequential(*block(1, cfg.width), *block(cfg.width, 2 * cfg.width), nn.Flatten(),
                          nn.Dropout(cfg.dropout), nn.Linear(2 * cfg.width * 7 * 7, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def epoch() -> dict[str, float]:
        model.train()
        total, seen = 0.0, 0
        for x, y in data.batches("train", cfg.batch_size):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + loss.detach() * len(y), seen + len(y)
        return {"train_loss": total.item() / seen, **data.evaluate(model, "val"), **data.evaluate(model, "test")}

    return model, optimizer, epoch
