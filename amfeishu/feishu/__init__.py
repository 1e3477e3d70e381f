"""Talking to Feishu: custom-bot webhooks and what Feishu's answers mean."""
