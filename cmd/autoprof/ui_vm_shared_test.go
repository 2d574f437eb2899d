//go:build vm || vmhost

package main

// What the VM tests of the GUI (vm_ui_test.go, in the guest) and the host's
// half of TestUIBrowserVM (ui_vm_browser_test.go) agree on.

// uiPreads is how many preads of /dev/zero the pread helper makes.
const uiPreads = 3000

// uiBrowserEnv makes TestVMUIBrowserGuest the guest's half of the host's
// TestUIBrowserVM.
const uiBrowserEnv = "AUTOPROF_UI_BROWSER"
