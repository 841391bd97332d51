#!/usr/bin/env bash
# Install Forgeline, train the bundled support-intents example, evaluate it and serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1
if [ ! -d support-intents ]; then
  forgeline init support-intents --template text-classification
fi
cd support-intents
forgeline train
forgeline evaluate
forgeline predict "I lost my card" "what's the weather like today"
KEY=$(forgeline keys create --tenant demo --plan free)
echo
echo "Try the API from another terminal (with the demo tenant's key, free plan):"
echo "  curl -s -X POST http://127.0.0.1:8000/v1/models/support-intents/predict \\"
echo "       -H 'Authorization: Bearer $KEY' \\"
echo "       -H 'Content-Type: application/json' -d '{\"inputs\": [\"I lost my card\"]}'"
echo "Report: $PWD/models/support-intents/$(cat models/support-intents/LATEST)/evaluation/report.html"
echo
exec forgeline serve
