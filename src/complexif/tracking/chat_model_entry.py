"""What MLflow runs to load a registered ComplexIF model (models-from-code): the model object,
configured by the version's model config (see :mod:`complexif.tracking.chat_model`)."""

from mlflow.models import set_model

from complexif.tracking.chat_model import ChatModel

set_model(ChatModel())
