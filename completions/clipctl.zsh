#compdef clipctl

_clipctl_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CLIPCTL_COMPLETE=complete_zsh clipctl)
}

compdef _clipctl_completion clipctl
