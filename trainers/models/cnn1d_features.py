"""`cnn1d_features`: the GTZAN features report's 1-D CNN, reading the descriptor vector as a sequence."""

from __future__ import annotations

from torch import nn

from trainers.models.layers import output_size


class CNN1DFeatures(nn.Module):
    def __init__(self, shape: tuple[int], n_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, shape[0])),
            nn.Conv1d(1, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(inplace=True),
            nn.MaxPool1d(2, ceil_mode=True), nn.Dropout(0.3),
            nn.Conv1d(32, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(inplace=True),
            nn.MaxPool1d(2, ceil_mode=True), nn.Dropout(0.3),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(output_size(self.features, shape), 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(128, n_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))
