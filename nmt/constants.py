"""Special pieces and ids that the model code relies on, and serving names."""

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3

PAD_PIECE = "<pad>"
UNK_PIECE = "<unk>"
BOS_PIECE = "<s>"
EOS_PIECE = "</s>"

# Files written into every model directory.
CONFIG_FILE = "config.yaml"
VERSION_FILE = "VERSION"
SOURCE_SPM = "source.model"
TARGET_SPM = "target.model"
JOINT_SPM = "joint.model"

# SavedModel signatures.
SERVING_SIGNATURE = "serving_default"
IDS_SIGNATURE = "translate_ids"
ATTENTION_SIGNATURE = "translate_attention"  # text in, pieces and attention out (nmt serve's page)
