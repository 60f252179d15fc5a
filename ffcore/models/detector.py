"""The detector, assembled from a ModelConfig.

    image -> MobileNetV1-0.25 -> [attention x3] -> BiFPN (3 cells) -> [attention x3]
          -> SSH (deformable) x3 -> channel shuffle -> [dropout] -> heads

The RetinaFace-MobileNet0.25 reference (variant ``retinaface_mnet025``) uses the same backbone,
an FPN instead of the BiFPN, plain-conv SSH, no attention, no shuffle.
"""

from __future__ import annotations

import torch
from torch import nn

from ffcore.config import ModelConfig
from ffcore.models.attention import AttentionBlock, create_attention
from ffcore.models.backbone import MAX_STRIDE, STAGE_CHANNELS, MobileNetV1
from ffcore.models.context import SSH, ChannelShuffle
from ffcore.models.heads import DetectionHeads
from ffcore.models.init_streams import StreamFactory, streams
from ffcore.models.neck import FPN, BiFPN
from ffcore.schedule import Phase

# Module groups in forward order: the rows of the thesis' parameter table.
MODULE_GROUPS: tuple[str, ...] = (
    "backbone",
    "backbone_attention",
    "neck",
    "neck_attention",
    "context",
    "shuffle",
    "heads",
)


class FeatherFace(nn.Module):
    def __init__(self, config: ModelConfig, init_seed: int | None = None) -> None:
        """``init_seed``: draw each module group's initial weights from its own stream
        (``ffcore.models.init_streams``), so variants built from one seed share every common
        tensor exactly; None draws from the global generator in construction order."""
        super().__init__()
        self.config = config
        c, spec = config.neck_channels, config.spec
        stream = streams(init_seed)
        with stream("backbone"):
            self.backbone = MobileNetV1()
        self.backbone_attention = nn.ModuleList(
            self._attention(ch, streams(init_seed, f"backbone_attention.{i}"))
            for i, ch in enumerate(STAGE_CHANNELS)
        )
        with stream("neck"):
            if spec.neck == "fpn":
                self.neck: nn.Module = FPN(STAGE_CHANNELS, c)
            else:
                self.neck = BiFPN(STAGE_CHANNELS, c, config.bifpn_repeats)
        self.neck_attention = nn.ModuleList(
            self._attention(c, streams(init_seed, f"neck_attention.{i}"))
            for i in range(len(STAGE_CHANNELS))
        )
        contexts = []
        for i in range(len(STAGE_CHANNELS)):
            with stream(f"context.{i}"):
                contexts.append(SSH(c, deformable=config.deformable))
        self.context = nn.ModuleList(contexts)
        self.shuffle = ChannelShuffle(2) if spec.shuffle else nn.Identity()
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.dropout_on = False
        # True in ffcore.models.fuse's inference copy: the input is made channels-last (NHWC)
        self.channels_last = False
        with stream("heads"):
            self.heads = DetectionHeads(c, len(STAGE_CHANNELS), config.num_anchors)

    def _attention(self, channels: int, init: StreamFactory) -> nn.Module:
        cfg = self.config
        return create_attention(
            cfg.spec.attention,
            channels,
            reduction=cfg.cbam_reduction,
            gamma=cfg.eca_gamma,
            beta=cfg.eca_beta,
            sam_kernel=cfg.sam_kernel,
            init=init,
        )

    # -- switches ---------------------------------------------------------------------------
    def attention_blocks(self) -> list[AttentionBlock]:
        return [m for m in self.modules() if isinstance(m, AttentionBlock)]

    def set_attention(self, channel: bool, spatial: bool) -> None:
        """Switch the channel part (ECA / CBAM-MLP) and the spatial part (SAM) of every block."""
        for block in self.attention_blocks():
            block.set_switches(channel, spatial)

    def attention_state(self) -> tuple[bool, bool] | None:
        """(channel_on, spatial_on) shared by all blocks; None for a model without attention."""
        blocks = self.attention_blocks()
        if not blocks:
            return None
        states = {(b.channel_on, b.spatial_on) for b in blocks}
        if len(states) != 1:
            raise RuntimeError(f"attention blocks disagree: {sorted(states)}")
        return states.pop()

    def set_head_dropout(self, on: bool) -> None:
        self.dropout_on = bool(on)

    def apply_phase(self, phase: Phase, schedule: str = "phased") -> None:
        """The attention and head-dropout switches of a phase of the table: the one place
        where a phase configures the model (training, checkpoint loading, reports).
        ``schedule="joint"`` keeps both attention parts on in every phase (the ablation's
        control); the head dropout still follows the phase."""
        if schedule == "joint":
            self.set_attention(True, True)
        elif schedule == "phased":
            self.set_attention(phase.channel_attention, phase.spatial_attention)
        else:
            raise ValueError(f"schedule must be 'phased' or 'joint', got {schedule!r}")
        self.set_head_dropout(phase.head_dropout)

    # -- forward ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The three maps that enter the heads ([B, C, H/8, W/8], [.., /16], [.., /32])."""
        if x.shape[-1] % MAX_STRIDE or x.shape[-2] % MAX_STRIDE:
            raise ValueError(
                f"input height and width must be divisible by {MAX_STRIDE}, got {tuple(x.shape[-2:])}"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = [att(f) for att, f in zip(self.backbone_attention, self.backbone(x), strict=True)]
        feats = [att(f) for att, f in zip(self.neck_attention, self.neck(feats), strict=True)]
        feats = [self.shuffle(ssh(f)) for ssh, f in zip(self.context, feats, strict=True)]
        if self.dropout_on:
            feats = [self.head_dropout(f) for f in feats]
        return feats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 3, H, W] -> (box [B, P, 4], class logits [B, P, 2], landmarks [B, P, 10])."""
        return self.heads(self.features(x))
