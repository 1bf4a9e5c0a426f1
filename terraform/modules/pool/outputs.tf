output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group: the hook's provider.autoScalingGroup."
  value       = aws_autoscaling_group.pool.name
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group (for the runner-iam module's pool policy)."
  value       = aws_autoscaling_group.pool.arn
}

output "security_group_id" {
  description = "Security group of the members (SSH from the runner hosts only)."
  value       = aws_security_group.member.id
}

output "launch_template_id" {
  description = "Id of the members' launch template."
  value       = aws_launch_template.member.id
}

output "launch_template_latest_version" {
  description = "Latest version of the launch template (the one the group uses)."
  value       = aws_launch_template.member.latest_version
}

output "instance_role_arn" {
  description = "ARN of the members' IAM role (may only publish the member's own host key)."
  value       = aws_iam_role.member.arn
}

output "instance_role_name" {
  description = "Name of the members' IAM role."
  value       = aws_iam_role.member.name
}

output "instance_profile_arn" {
  description = "ARN of the members' instance profile."
  value       = aws_iam_instance_profile.member.arn
}

output "ssh_user" {
  description = "SSH user on the members: the hook's provider.user."
  value       = var.ssh_user
}

output "ssh_port" {
  description = "sshd port of the members: the hook's provider.sshPort."
  value       = var.ssh_port
}

output "work_root" {
  description = "Work root on the members: the hook's remote.workRoot."
  value       = var.work_root
}

output "host_key_tag" {
  description = "Tag on which each member publishes its SSH host key (written once, by the member itself)."
  value       = local.host_key_tag
}

output "image_id" {
  description = "AMI the members boot."
  value       = local.image_id
}

output "instance_policy_json" {
  description = "The members' inline policy (publish the own host key, once), as JSON."
  value       = jsonencode(local.publish_host_key_policy)
}
