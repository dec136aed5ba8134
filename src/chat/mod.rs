//! STUB: PTY chat sessions (the chat helper replaces this).
