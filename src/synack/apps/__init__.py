"""Applications written once against asyncio transports and streams, so they run
on the kernel's sockets and on synack's own TCP/IP stack alike."""
