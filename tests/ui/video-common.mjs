// Shared by the video browser test, leak test and latency bench.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
  // Host candidates as IP addresses, not mDNS names (the station's ICE
  // agent cannot resolve .local names).
  '--disable-features=WebRtcHideLocalIpsWithMdns'];
