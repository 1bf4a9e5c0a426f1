output "launch_template_id" {
  description = "Id of the launch template: the hook's provider.launchTemplate.id."
  value       = aws_launch_template.instance.id
}

output "launch_template_arn" {
  description = "ARN of the launch template (the runner-iam module takes its id, launch_template_id, in launch_template_ids)."
  value       = aws_launch_template.instance.arn
}

output "launch_template_latest_version" {
  description = "Latest version of the launch template."
  value       = aws_launch_template.instance.latest_version
}

output "security_group_id" {
  description = "Security group of the instances (SSH from the runner hosts only), stated in the template."
  value       = aws_security_group.instance.id
}

output "security_group_arn" {
  description = "ARN of that security group (the runner-iam module takes its id, security_group_id, in security_group_ids)."
  value       = aws_security_group.instance.arn
}

output "image_id" {
  description = "The AMI of the template."
  value       = var.image_id
}

output "root_device_name" {
  description = "Root device of the AMI, sized and encrypted by the template."
  value       = data.aws_ami.image.root_device_name
}
