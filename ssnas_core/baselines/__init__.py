"""Baseline networks trained on the fine-tune engine: ResNet-18/50 (torchvision) and CIFAR ResNet-32."""
