"""Cards: from queued notifications to sized, checked Feishu messages."""
