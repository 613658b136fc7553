"""One module per served model. Each exposes `build() -> nn.Module` and `recipe() -> Recipe`."""
from training.models import baseline_cnn, resnet50, tuned_cnn

MODELS = {"baseline_cnn": baseline_cnn, "tuned_cnn": tuned_cnn, "resnet50": resnet50}
